// The seed's Express server: receive the webhook, publish it to Kafka, answer 200.
const express = require('express');
const { kafka, topic } = require('./kafka');
const { open } = require('./db');

const db = open();
const producer = kafka.producer();
const app = express();
app.use(express.json());

const insertOrder = db.prepare(
  "INSERT INTO orders (id, user_id, items, total_amount, status, updated_at) VALUES (?, ?, ?, ?, 'pending', datetime('now'))",
);

app.post('/api/orders', (req, res) => {
  const { id, user_id, items, total_amount } = req.body;
  try {
    insertOrder.run(id ?? null, user_id ?? null, JSON.stringify(items ?? []), total_amount ?? null);
    res.status(201).json({ id, status: 'pending' });
  } catch (err) {
    res.status(400).json({ error: err.message });
  }
});

app.post('/api/webhooks/payment', async (req, res) => {
  try {
    await producer.send({ topic, messages: [{ value: JSON.stringify(req.body) }] });
    res.status(200).json({ message: 'Webhook received' });
  } catch (err) {
    console.error('publish failed', err);
    res.status(500).json({ error: 'Internal server error' });
  }
});

// Not in the seed document: read-only views of the two tables, so that a test can see the
// end state without opening the database file.
const getOrder = db.prepare('SELECT * FROM orders WHERE id = ?');
const getPayment = db.prepare('SELECT * FROM payments WHERE id = ?');
for (const [path, stmt] of [['/api/orders/:id', getOrder], ['/api/payments/:id', getPayment]]) {
  app.get(path, (req, res) => {
    const row = stmt.get(req.params.id);
    if (row) res.json(row);
    else res.status(404).json({ error: 'Not found' });
  });
}

async function main() {
  await producer.connect();
  const port = Number(process.env.PORT || 3000);
  app.listen(port, process.env.HOST || '127.0.0.1', () => console.log(`server listening on ${port}`));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
