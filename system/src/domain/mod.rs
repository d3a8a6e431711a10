//! The payments domain: events, orders and the rules between them. No I/O here.

pub mod event;
pub mod order;
pub mod redelivery;
pub mod state;
pub mod stripe;

pub use event::{EventType, Invalid, PaymentEvent, WebhookBody};
pub use order::{CreateOutcome, NewOrder};
pub use state::{decide, Conflict, Effect, OrderStatus, OrderTerms, Outcome, Payment, PaymentStatus};
