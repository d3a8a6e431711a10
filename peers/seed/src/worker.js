// The seed's worker: consume, skip payments already marked success, apply the event to
// payments and orders in one transaction, retry with exponential backoff, then commit the
// offset by hand.
const { kafka, topic } = require('./kafka');
const { open } = require('./db');

const db = open();
const consumer = kafka.consumer({ groupId: process.env.SEED_GROUP || 'seed-webhook-workers' });

const PAYMENT_STATUS = {
  'payment.pending': 'pending',
  'payment.success': 'success',
  'payment.failed': 'failed',
  'payment.refunded': 'refunded',
};
const ORDER_STATUS = { pending: 'pending', success: 'paid', failed: 'failed', refunded: 'refunded' };

const findPayment = db.prepare('SELECT status FROM payments WHERE id = ?');
const upsertPayment = db.prepare(`
  INSERT INTO payments (id, order_id, amount, currency, status, updated_at)
  VALUES (?, ?, ?, ?, ?, datetime('now'))
  ON CONFLICT(id) DO UPDATE SET order_id = excluded.order_id, amount = excluded.amount,
    currency = excluded.currency, status = excluded.status, updated_at = excluded.updated_at`);
const updateOrder = db.prepare("UPDATE orders SET status = ?, updated_at = datetime('now') WHERE id = ?");

const apply = db.transaction((event, status) => {
  upsertPayment.run(event.payment_id ?? null, event.order_id ?? null, event.amount ?? null, event.currency ?? null, status);
  if (event.order_id && ORDER_STATUS[status]) updateOrder.run(ORDER_STATUS[status], event.order_id);
});

function processEvent(event) {
  const existing = findPayment.get(event.payment_id ?? null);
  if (existing && existing.status === 'success') {
    console.log(`payment ${event.payment_id} already success, skipping`);
    return;
  }
  apply(event, PAYMENT_STATUS[event.event_type] ?? null);
}

const MAX_RETRIES = 5;
const BASE_DELAY_MS = 100;

async function withRetry(fn) {
  for (let attempt = 0; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      if (attempt >= MAX_RETRIES) throw err;
      const delay = BASE_DELAY_MS * 2 ** attempt;
      console.warn(`database operation failed (${err.message}), retrying in ${delay} ms`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

async function main() {
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      const event = JSON.parse(message.value.toString());
      await withRetry(() => processEvent(event));
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
    },
  });
  console.log('worker consuming', topic);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
