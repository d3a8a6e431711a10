//! Dead letters an operator can act on: list, show, and replay onto the queue.
//!
//! Replay appends the original event, unchanged, so idempotency still holds: an event that
//! was in fact applied meanwhile is recognised by its id and does nothing; one that fails
//! again comes back as a dead letter, waiting again.

use serde::{Deserialize, Serialize};

use crate::domain::PaymentEvent;
use crate::queue::{Producer, QueueError};
use crate::store::{now_us, DeadLetterFilter, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("replay through the server at {url}: {why}")]
    Server { url: String, why: String },
}

/// How the worker names the dead letter of a delivery it could not decode.
pub const UNDECODABLE: &str = "undecodable:";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Event ids put back on the queue.
    pub replayed: Vec<String>,
    /// Dead letters that cannot be replayed (their bytes were never a valid event), with why.
    pub skipped: Vec<(i64, String)>,
}

/// Replays every dead letter the filter matches (not yet replayed ones, unless asked).
pub async fn replay(store: &dyn Store, producer: &dyn Producer, filter: &DeadLetterFilter) -> Result<ReplayReport, DlqError> {
    let (_, letters) = store.dead_letters(filter).await?;
    let mut report = ReplayReport::default();
    for letter in letters {
        if letter.event_id.starts_with(UNDECODABLE) {
            // A record the log found damaged (or a message that never decoded): its bytes
            // failed the checksum, so even when they still parse they are not the event that
            // was acknowledged, and replaying them could apply another amount or id.
            report.skipped.push((letter.id, "its bytes were damaged or never an event: not replayable".into()));
            continue;
        }
        let event: PaymentEvent = match serde_json::from_str(&letter.payload) {
            Ok(e) => e,
            Err(e) => {
                report.skipped.push((letter.id, format!("not a payment event: {e}")));
                continue;
            }
        };
        // A fresh ingress stamp: end-to-end latency of a replay starts at the replay.
        producer.append(&PaymentEvent { received_at_us: now_us(), ..event }).await?;
        store.mark_replayed(&[(letter.id, letter.attempts)]).await?;
        report.replayed.push(letter.event_id);
    }
    Ok(report)
}

/// Replays through a running server's API (`POST /api/dead-letters/replay`): the server
/// writes the log, and a log has one writer.
pub async fn replay_via_server(url: &str, admin_token: Option<&str>, filter: &DeadLetterFilter) -> Result<ReplayReport, DlqError> {
    let failed = |why: String| DlqError::Server { url: url.to_owned(), why };
    let endpoint = match filter.id {
        Some(id) => format!("{url}/api/dead-letters/{id}/replay"),
        None => format!("{url}/api/dead-letters/replay"),
    };
    // Numbers only: nothing to escape.
    let query: Vec<String> = [filter.since_us.map(|s| format!("since_us={s}")), filter.limit.map(|l| format!("limit={l}"))].into_iter().flatten().collect();
    let mut request = reqwest::Client::new().post(format!("{endpoint}?{}", query.join("&")));
    if let Some(token) = admin_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let hint = if status.as_u16() == 401 { " (set ADMIN_TOKEN or --admin-token to the server's token)" } else { "" };
        return Err(failed(format!("{status}: {body}{hint}")));
    }
    response.json().await.map_err(|e| failed(format!("unexpected answer: {e}")))
}

/// The id of the HTTP request that delivered a dead letter's event, from its payload; `None`
/// for events queued before request ids, and for payloads that are no payment event.
pub fn request_id(payload: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Trail {
        request_id: Option<String>,
    }
    serde_json::from_str::<Trail>(payload).ok()?.request_id
}

/// Parses `--since`: unix seconds, or an age such as `90s`, `30m`, `2h`, `7d`.
pub fn parse_since(s: &str, now_us: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1_000_000));
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num.parse().map_err(|_| format!("{s:?} is neither unix seconds nor an age like 30m"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in {s:?}: use s, m, h or d")),
    };
    Ok(now_us.saturating_sub(n.saturating_mul(unit_secs).saturating_mul(1_000_000)))
}

#[cfg(test)]
mod tests {
    use super::{parse_since, request_id};

    #[test]
    fn a_dead_letter_names_its_request_when_its_event_did() {
        assert_eq!(request_id(r#"{"event_id":"e","request_id":"req-1"}"#).as_deref(), Some("req-1"));
        assert_eq!(request_id(r#"{"event_id":"e"}"#), None);
        assert_eq!(request_id("not json"), None);
    }

    #[test]
    fn since_takes_unix_seconds_or_an_age() {
        let now = 10_000 * 1_000_000;
        assert_eq!(parse_since("1700000000", now), Ok(1_700_000_000_000_000));
        assert_eq!(parse_since("30m", now), Ok(now - 1800 * 1_000_000));
        assert_eq!(parse_since("2h", now), Ok(now - 7200 * 1_000_000));
        assert!(parse_since("2w", now).is_err());
        assert!(parse_since("soon", now).is_err());
    }
}
