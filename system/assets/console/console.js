// The operator console. Everything it shows comes from the system's JSON API; every request
// carries the admin token the operator typed (kept in sessionStorage, never sent by the server).
// Data is written with textContent only: payloads come from outside and may contain markup.
"use strict";

const POLL_MS = 2000;
const HISTORY_POINTS = 150; // 5 minutes at POLL_MS
const TOKEN_KEY = "webhooks-admin-token";
const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  if (response.status === 401) throw new Unauthorized();
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const why = body && body.message ? body.message : "not served by this process";
    throw Object.assign(new Error("HTTP " + response.status + ": " + why), { status: response.status });
  }
  return body;
}

// ---- sign-in -------------------------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  $("app").hidden = true;
  $("tabs").hidden = true;
  $("sign-out").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("tabs").hidden = false;
  $("sign-out").hidden = !sessionStorage.getItem(TOKEN_KEY);
}

function onUnauthorized(err) {
  if (!(err instanceof Unauthorized)) return false;
  const had = sessionStorage.getItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(had ? "That token was refused." : "");
  return true;
}

// ---- live view -----------------------------------------------------------------------------

const series = { accepted: [], applied: [], rejected: [], dead: [] };
let previous = null;
let timer = null;

function stopPolling() {
  clearTimeout(timer);
  timer = null;
}

function totals(stats) {
  const rejected = Object.values(stats.ingress.rejected).reduce((a, b) => a + b, 0);
  const w = stats.worker;
  return {
    accepted: stats.ingress.accepted,
    applied: w ? w.applied : null,
    rejected,
    dead: w ? w.dead_lettered : null,
  };
}

function ms(us) {
  return (us / 1000).toFixed(us < 10000 ? 2 : 0);
}

function renderStats(stats, now) {
  const t = totals(stats);
  for (const key of Object.keys(series)) {
    $("total-" + key).textContent = t[key] === null ? "n/a" : t[key];
    let rate = null;
    if (previous && t[key] !== null && previous.totals[key] !== null) {
      rate = Math.max(0, (t[key] - previous.totals[key]) / ((now - previous.at) / 1000));
    }
    $("rate-" + key).textContent = rate === null ? "-" : rate.toFixed(rate < 10 ? 1 : 0);
    series[key].push(rate);
    if (series[key].length > HISTORY_POINTS) series[key].shift();
  }
  previous = { totals: t, at: now };
  $("queue-depth").textContent = stats.queue.depth ?? "n/a";
  $("spool-depth").textContent = stats.queue.spool_depth ?? "n/a";
  const ack = stats.ingress.ack_latency_us;
  $("ack-p50").textContent = ms(ack.p50);
  $("ack-p99").textContent = ms(ack.p99);
  $("ack-n").textContent = ack.count;
  const e2e = stats.worker ? stats.worker.e2e_latency_us : null;
  $("e2e-p50").textContent = e2e ? ms(e2e.p50) : "n/a";
  $("e2e-p99").textContent = e2e ? ms(e2e.p99) : "n/a";
  $("e2e-n").textContent = e2e ? e2e.count : "n/a";
  const reasons = $("reasons").tBodies[0];
  const rejected = Object.entries(stats.ingress.rejected);
  reasons.replaceChildren(...(rejected.length ? rejected.map(([r, n]) => row([r, n])) : [row(["none", ""])]));
  renderStripe(stats.ingress.stripe);
  $("live-status").textContent = stats.worker ? "updated " + new Date(now).toLocaleTimeString()
    : "the worker runs in another process: its figures are on its own console";
  drawChart();
}

// What Stripe was told was fine without it being queued: types not handled, and events kept
// for an operator; with the API versions Stripe sent, to notice an account's upgrade.
function renderStripe(stripe) {
  const rows = [
    ...Object.entries(stripe.ignored).map(([t, n]) => row(["ignored " + t, n])),
    ...(stripe.for_operator ? [row(["kept for an operator", stripe.for_operator])] : []),
    ...Object.entries(stripe.api_versions).map(([v, n]) => row(["API version " + v, n])),
  ];
  $("stripe").tBodies[0].replaceChildren(...(rows.length ? rows : [row(["none", ""])]));
}

function drawChart() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const values = Object.values(series).flat().filter((v) => v !== null);
  const top = Math.max(1, ...values) * 1.1;
  ctx.fillStyle = "#64748b";
  ctx.font = "12px sans-serif";
  ctx.fillText(top.toFixed(0) + "/s", 4, 12);
  const styles = getComputedStyle(document.documentElement);
  for (const [key, points] of Object.entries(series)) {
    ctx.strokeStyle = styles.getPropertyValue("--" + key).trim();
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    points.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      const x = width - (points.length - 1 - i) * (width / (HISTORY_POINTS - 1));
      const y = height - (v / top) * (height - 16);
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
    });
    ctx.stroke();
  }
}

async function poll() {
  try {
    renderStats(await api("/api/stats"), Date.now());
    showApp();
  } catch (err) {
    if (onUnauthorized(err)) return;
    $("live-status").textContent = "cannot read stats: " + err.message;
  }
  timer = setTimeout(poll, POLL_MS);
}

// ---- find ----------------------------------------------------------------------------------

function row(cells, className) {
  const tr = document.createElement("tr");
  if (className) tr.className = className;
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.append(c); else td.textContent = c ?? "";
    tr.append(td);
  }
  return tr;
}

function time(us) {
  return us ? new Date(us / 1000).toISOString().replace("T", " ").replace("Z", "") : "";
}

function money(amount, currency) {
  return (amount / 100).toFixed(2) + " " + (currency || "");
}

function badge(el, status) {
  el.textContent = status;
  el.className = "badge status-" + status;
}

// The type a dead letter's payload names: the flat body's event_type, or Stripe's own type
// for an event Stripe sent that was kept for an operator (its payload is the whole envelope).
function payloadType(payload) {
  try {
    const p = JSON.parse(payload);
    if (p.object === "event" && typeof p.type === "string") return "Stripe " + p.type;
    return p.event_type || "";
  } catch (_) {
    return "(not an event)";
  }
}

// A dead letter whose error says "conflict:" is a conflict, not an ordinary failure.
function deadOutcome(d) {
  return d.error.startsWith("conflict:") ? "conflict-dead-lettered" : "dead-lettered";
}

function historyRows(events, deadLetters) {
  const entries = events.map((e) => ({
    at: e.received_at_us, cells: [time(e.received_at_us), time(e.applied_at_us), e.event_id, e.event_type, e.outcome, ""],
    outcome: e.outcome,
  }));
  for (const d of deadLetters) {
    const type = payloadType(d.payload);
    const detail = d.error + (d.replayed_at_us ? " — replayed " + time(d.replayed_at_us) : "");
    const outcome = deadOutcome(d);
    const label = outcome === "conflict-dead-lettered" ? "conflict (dead letter)" : "dead-lettered";
    entries.push({ at: d.failed_at_us, cells: [time(d.failed_at_us), time(d.failed_at_us), d.event_id, type, label, detail], outcome });
  }
  entries.sort((a, b) => a.at - b.at);
  return entries.map((e) => row(e.cells, "outcome-" + e.outcome));
}

async function findPayment(id) {
  const query = "?include_replayed=true&limit=1000&payment_id=" + encodeURIComponent(id);
  const [payment, dead] = await Promise.all([
    api("/api/payments/" + encodeURIComponent(id)).catch(notFoundAsNull),
    api("/api/dead-letters" + query),
  ]);
  if (!payment && dead.items.length === 0) return false;
  $("find-payment").hidden = false;
  $("payment-id").textContent = id;
  badge($("payment-status"), payment ? payment.status : "not applied");
  const orderId = payment ? payment.order_id : dead.items[0].order_id;
  $("payment-order").textContent = orderId || "";
  $("payment-order").onclick = (ev) => { ev.preventDefault(); find(orderId); };
  $("payment-amount").textContent = payment ? money(payment.amount, payment.currency) : "-";
  $("payment-applied").textContent = payment ? payment.applied_events : 0;
  $("history").hidden = false;
  $("history").tBodies[0].replaceChildren(...historyRows(payment ? payment.events : [], dead.items));
  return true;
}

async function findOrder(id) {
  const order = await api("/api/orders/" + encodeURIComponent(id)).catch(notFoundAsNull);
  if (!order) return false;
  $("find-order").hidden = false;
  $("order-id").textContent = order.id;
  badge($("order-status"), order.status);
  $("order-total").textContent = money(order.total_amount, order.currency);
  $("order-payments").tBodies[0].replaceChildren(...order.payments.map((p) => {
    const tr = row([p.payment_id, p.status, money(p.amount, p.currency)], "clickable");
    tr.onclick = () => find(p.payment_id);
    return tr;
  }));
  return true;
}

function notFoundAsNull(err) {
  if (err.status === 404) return null;
  throw err;
}

async function find(id) {
  $("find-id").value = id;
  for (const el of ["find-order", "find-payment", "history"]) $(el).hidden = true;
  $("find-status").textContent = "looking up " + id + "…";
  try {
    const [isOrder, isPayment] = await Promise.all([findOrder(id), findPayment(id)]);
    $("find-status").textContent = isOrder || isPayment ? "" : "no payment or order " + id;
  } catch (err) {
    if (!onUnauthorized(err)) $("find-status").textContent = err.message;
  }
}

// ---- dead letters --------------------------------------------------------------------------

function deadQuery() {
  const q = new URLSearchParams({ limit: "200" });
  if ($("dead-payment").value) q.set("payment_id", $("dead-payment").value);
  if ($("dead-order").value) q.set("order_id", $("dead-order").value);
  if ($("dead-kind").value) q.set("error_prefix", $("dead-kind").value);
  if ($("dead-replayed").checked) q.set("include_replayed", "true");
  return q;
}

async function listDead() {
  try {
    const page = await api("/api/dead-letters?" + deadQuery());
    $("dead-count").textContent = page.count + " matching, " + page.items.length + " shown";
    $("dead-list").tBodies[0].replaceChildren(...page.items.map((d) => {
      const tr = row([d.id, time(d.failed_at_us), d.event_id, payloadType(d.payload), d.payment_id, d.order_id, d.error, time(d.replayed_at_us)],
        "clickable outcome-" + deadOutcome(d));
      tr.onclick = () => showDead(d);
      return tr;
    }));
  } catch (err) {
    if (!onUnauthorized(err)) $("dead-count").textContent = err.message;
  }
}

function showDead(d) {
  $("dead-detail").hidden = false;
  $("detail-id").textContent = d.id + " (" + d.event_id + ")";
  $("detail-error").textContent = d.error;
  let pretty = d.payload;
  try { pretty = JSON.stringify(JSON.parse(d.payload), null, 2); } catch (_) { /* shown as stored */ }
  $("detail-payload").textContent = pretty;
  $("replay-one").onclick = () => confirmReplay("Replay dead letter " + d.id + " (" + d.event_id + ")?",
    "/api/dead-letters/" + d.id + "/replay");
}

function confirmReplay(question, path) {
  $("confirm").hidden = false;
  $("confirm-text").textContent = question + " ";
  $("confirm-yes").onclick = () => { $("confirm").hidden = true; replay(path); };
  $("confirm-no").onclick = () => { $("confirm").hidden = true; };
}

async function replay(path) {
  $("dead-result").textContent = "replaying…";
  try {
    const report = await api(path, { method: "POST" });
    const skipped = report.skipped.map(([id, why]) => id + ": " + why).join("; ");
    $("dead-result").textContent = "replayed " + report.replayed.length + (report.replayed.length ? " (" + report.replayed.join(", ") + ")" : "")
      + (skipped ? ", skipped " + skipped : "");
    await listDead();
  } catch (err) {
    if (!onUnauthorized(err)) $("dead-result").textContent = "replay failed: " + err.message;
  }
}

// ---- exposure ------------------------------------------------------------------------------

const OPEN_SURFACES = {
  unsigned_webhooks: "webhooks are accepted unsigned",
  open_management_api: "this console and the management API need no token",
};

// /readyz lists what --insecure left open on an address other machines can reach. It needs no
// token, so the warning shows on the sign-in page too. A worker's console has no /readyz.
async function showExposure() {
  const response = await fetch("/readyz", { cache: "no-store" }).catch(() => null);
  const body = response ? await response.json().catch(() => null) : null;
  const open = body && Array.isArray(body.insecure) ? body.insecure : [];
  $("insecure").hidden = open.length === 0;
  $("insecure").textContent = "Started with --insecure: " + open.map((s) => OPEN_SURFACES[s] || s).join(", ")
    + ". Anyone who can reach this server can forge payments or read and replay them.";
}

// ---- wiring --------------------------------------------------------------------------------

function switchTo(view) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
  if (view === "dead") listDead();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#tabs button")) b.onclick = () => switchTo(b.dataset.view);
  $("login-form").onsubmit = (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    poll();
  };
  $("sign-out").onclick = () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(""); };
  $("find-form").onsubmit = (ev) => { ev.preventDefault(); find($("find-id").value.trim()); };
  $("dead-form").onsubmit = (ev) => { ev.preventDefault(); listDead(); };
  $("replay-all").onclick = () => {
    const q = deadQuery();
    q.set("limit", "10000");
    confirmReplay("Replay all " + $("dead-count").textContent.split(" ")[0] + " matching dead letters?", "/api/dead-letters/replay?" + q);
  };
  showExposure();
  poll();
});
