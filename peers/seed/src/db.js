// The SQLite database both processes open (the seed: "an SQLite database, db.sqlite").
const Database = require('better-sqlite3');

function open() {
  const db = new Database(process.env.SEED_DB || 'db.sqlite');
  // Two processes write one file: the server (orders) and the worker (payments, orders).
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  db.exec(`
    CREATE TABLE IF NOT EXISTS orders (
      id TEXT PRIMARY KEY,
      user_id TEXT,
      items TEXT,
      total_amount INTEGER,
      status TEXT NOT NULL DEFAULT 'pending',
      updated_at TEXT
    );
    CREATE TABLE IF NOT EXISTS payments (
      id TEXT PRIMARY KEY,
      order_id TEXT,
      amount INTEGER,
      currency TEXT,
      status TEXT,
      updated_at TEXT
    );
  `);
  return db;
}

module.exports = { open };
