//! `webhooks` with the test-only faults of `webhooks::fault` behind hidden flags; only built
//! with `--features fault-injection`, never shipped. Shares `main.rs` so that the faulty
//! system differs from the real one only by the fault it is told to inject.

#[path = "../main.rs"]
mod cli;

fn main() -> anyhow::Result<()> {
    cli::main()
}
