//! A load run's end-state check for a receiver that is not ours: every payment the run
//! touched and every order it created, read one at a time, against the oracle's model.

use crate::verify::{self, Ledger, Verdict};
use crate::workload::generator::{Generator, OrderRef};

use super::check::{self, Finding};
use super::read::Observed;
use super::Reader;

/// Examples kept for a person to start from, as the system's own check keeps.
const EXAMPLES: usize = 10;

fn example(v: &mut Verdict, id: &str, f: &Finding) {
    if v.examples.len() < EXAMPLES {
        v.examples.push(format!("{id}: {}", f.describe()));
    }
}

pub async fn all(reader: &Reader, g: &Generator, ledger: &Ledger) -> Verdict {
    let mut v = Verdict::default();
    let payments: Vec<(String, u32)> = ledger.applied.keys().map(|p| (g.ids.payment(*p), *p)).collect();
    let ids: Vec<String> = payments.iter().map(|(id, _)| id.clone()).collect();
    let read_payments = reader.payments(&ids).await;
    for (id, p) in &payments {
        v.payments_checked += 1;
        let events = &ledger.applied[p];
        let f = check::payment(verify::expected_payment(events).as_ref(), read_payments.observed.get(id).unwrap_or(&Observed::Missing));
        match &f {
            Finding::Right => {}
            Finding::Lost => v.lost += events.len() as u64,
            Finding::Doubled(_) => v.double_applied += 1,
            Finding::Unexpected(_) => v.unexpected_applied += 1,
            Finding::Wrong(_) | Finding::Unreadable(_) => v.wrong_payment_state += 1,
        }
        if !f.is_right() {
            example(&mut v, id, &f);
        }
    }
    let expected = verify::expected_orders(&g.orders, &g.payments, ledger);
    let orders: Vec<String> = (0..g.orders.len()).map(|i| g.ids.order(OrderRef::Created(i as u32))).collect();
    let read_orders = reader.orders(&orders).await;
    for (id, status) in orders.iter().zip(expected) {
        v.orders_checked += 1;
        let f = check::order(status, read_orders.observed.get(id).unwrap_or(&Observed::Missing));
        if !f.is_right() {
            v.wrong_order_state += 1;
            example(&mut v, id, &f);
        }
    }
    let took = read_payments.took + read_orders.took;
    tracing::info!(payments = ids.len(), orders = orders.len(), in_flight = reader.receiver().concurrency, took_s = took.as_secs_f64(), "read the receiver's end state one at a time");
    eprintln!("  verification read {} payments and {} orders one at a time, {} in flight, in {:.1} s", ids.len(), orders.len(), reader.receiver().concurrency, took.as_secs_f64());
    v
}
