//! A store behind the embedded log's oldest segment: restored from a backup older than the
//! log's history, or a database that lost commits (a failover to a lagging replica). The log
//! deletes a segment only once the store has made everything in it durable, so a stored
//! position before the oldest segment means the store went back in time, and the events
//! between are gone from both. Without this check the worker's reader answers "out of range"
//! forever while ingress keeps acknowledging.

use std::path::Path;

use crate::queue::log::{identity, segment};
use crate::queue::Position;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum GapError {
    #[error(
        "the store is behind the log: its position for {consumer} is offset {position}, but the log's oldest \
         segment starts at {first}, so events {from}..={to} were applied before and are gone from both. The store \
         was restored from a backup older than the log, or lost commits. Either restore the log saved with that \
         backup (webhooks backup saves both), or accept the loss: start the worker once with \
         --accept-log-gap, then ask the provider to resend the events since the backup was taken (they are \
         deduplicated by id)",
        from = .position + 1, to = .first - 1
    )]
    Behind { consumer: String, position: u64, first: u64 },
    #[error("cannot read the log: {0}")]
    Log(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The offset the store's positions reach, when the log no longer holds what comes next.
fn behind(stored: &[Position], oldest: Option<u64>) -> Option<(u64, u64)> {
    let position = stored.iter().map(|p| p.offset.max(0) as u64).max()?;
    let first = oldest?;
    (first > position + 1).then_some((position, first))
}

/// Refuses to let `consumer` resume behind the log in `dir`; with `accept`, moves its stored
/// position to just before the oldest segment instead, and says what was skipped.
pub async fn check(store: &dyn Store, dir: &Path, consumer: &str, accept: bool) -> Result<(), GapError> {
    if !dir.exists() {
        return Ok(());
    }
    let oldest = segment::list(dir).map_err(|e| GapError::Log(e.to_string()))?.first().copied();
    if oldest.is_none() {
        return Ok(());
    }
    let log = identity::load_or_create(dir).map_err(|e| GapError::Log(e.to_string()))?;
    // How the worker stores positions into a log: see `Store::log_position`.
    let consumer = format!("{consumer}@{log}");
    let Some((position, first)) = behind(&store.positions(&consumer).await?, oldest) else { return Ok(()) };
    if !accept {
        return Err(GapError::Behind { consumer, position, first });
    }
    tracing::error!(%consumer, skipped_from = position + 1, skipped_to = first - 1, "--accept-log-gap: resuming at the log's oldest segment; ask the provider to resend the events since the store's backup");
    store.dead_letter(&consumer, &[], &[Position { partition: 0, offset: first as i64 - 1 }]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Vec<Position> {
        vec![Position { partition: 0, offset }]
    }

    #[test]
    fn only_a_position_before_the_oldest_segment_is_a_gap() {
        assert_eq!(behind(&at(10), Some(11)), None, "the next record is the oldest one");
        assert_eq!(behind(&at(10), Some(5)), None, "the log still holds what comes next");
        assert_eq!(behind(&at(10), Some(12)), Some((10, 12)));
        assert_eq!(behind(&[], Some(12)), None, "no position: read from the beginning");
        assert_eq!(behind(&at(10), None), None, "an empty log");
    }
}
