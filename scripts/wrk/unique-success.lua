-- wrk script for scripts/closed-loop.sh: every request a new payment.success (unique event
-- and payment ids), unsigned, for the order the script created first.
local n = 0
local run = os.getenv("RUN_ID") or tostring(os.time())

request = function()
  n = n + 1
  local body = string.format(
    '{"event_type":"payment.success","payment_id":"pay_%s_%d","order_id":"ord_closed_loop","amount":1,"currency":"USD","event_id":"evt_%s_%d"}',
    run, n, run, n)
  return wrk.format("POST", "/api/webhooks/payment", { ["Content-Type"] = "application/json" }, body)
end
