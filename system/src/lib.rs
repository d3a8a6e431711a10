//! Payment webhooks, received fast and durably, applied exactly once.
//!
//! The path of one event, and the module for each step:
//!
//! ```text
//! provider --HTTP--> ingress      read body (limit) -> signature -> parse + validate -> event id
//!                      |           (ingress/webhook.rs, ingress/signature.rs, domain/event.rs)
//!                      v
//!                    queue        append durably, then 200; not stored -> 503 Retry-After
//!                      |           (queue/mod.rs: the interface; queue/embedded.rs over queue/log/: segment log, group commit)
//!                      v
//!                    worker       poll a batch -> store.apply_batch in one transaction -> commit position
//!                      |           retries with backoff, dead letters (worker/)
//!                      v
//!                    store        payments + orders, applied events, positions (store/sqlite.rs)
//!                                  what an event does is decided in domain/state.rs
//! ```
//!
//! `app.rs` wires these from the configuration (`config.rs`); `main.rs` only parses flags;
//! `datadir.rs` keeps a data directory to one process per role; `durable_dir.rs` makes the
//! directory entries of the durable path survive a power cut; `disk.rs` is the seam the
//! durable path's I/O goes through (the real file system, or the simulator's disk).
//! `ingress/request_id.rs` names each request; that id and the W3C trace context ride in the
//! queue record to the worker (`traces.rs` exports the spans when a collector is configured).

pub mod app;
pub mod backup;
pub mod config;
pub mod datadir;
pub mod disk;
pub mod dlq;
pub mod durable_dir;
pub mod domain;
pub mod fault;
pub mod holes;
pub mod health;
pub mod ingress;
pub mod log_gap;
pub mod logging;
pub mod metrics;
pub mod queue;
pub mod retention;
mod sqlite_conn;
pub mod store;
pub mod traces;
pub mod worker;
