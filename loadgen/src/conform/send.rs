//! One webhook at a time, as a payment provider sends it: signed or forged, answered, or
//! written and abandoned as a provider does when the receiver is too slow to answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::scenario::Scheme;
use crate::target::read::describe;
use crate::target::Receiver;
use crate::workload::oracle::EventType;
use crate::workload::sign::{SigHeaders, SignError, Signer};

/// One event of a case, in loadgen's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub ty: EventType,
    pub payment: String,
    pub order: String,
    pub amount: i64,
    pub currency: &'static str,
}

impl Event {
    /// The seed's webhook body, with the event id that receivers keeping one can use.
    pub fn body(&self) -> Vec<u8> {
        json!({"event_type": self.ty.as_str(), "payment_id": self.payment, "order_id": self.order, "amount": self.amount, "currency": self.currency, "event_id": self.id}).to_string().into_bytes()
    }
}

/// How a request's signature is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// Signed with a key the receiver does not know.
    OtherKey,
    /// No signature headers at all.
    Unsigned,
    /// A genuine signature of another body.
    OtherBody,
    /// Genuinely signed an hour ago: a replay.
    Stale,
}

impl Forgery {
    pub const ALL: [Forgery; 4] = [Self::OtherKey, Self::Unsigned, Self::OtherBody, Self::Stale];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OtherKey => "signed with another key",
            Self::Unsigned => "not signed",
            Self::OtherBody => "the signature of another body",
            Self::Stale => "signed an hour ago",
        }
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Hung, closed, or not HTTP: said as a person reads it.
    Broken(String),
    /// Written whole and the connection closed before any answer was read.
    Abandoned,
}

impl Answer {
    pub fn accepted(&self) -> bool {
        matches!(self, Self::Status(s) if (200..300).contains(s))
    }

    pub fn refused(&self) -> bool {
        matches!(self, Self::Status(s) if (400..500).contains(s))
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "{s}"),
            Self::Broken(e) => f.write_str(e),
            Self::Abandoned => f.write_str("abandoned"),
        }
    }
}

#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    base: String,
    /// host:port, for the abandoned requests written by hand.
    authority: String,
    path: String,
    signer: Signer,
    /// For forgeries when the receiver signs nothing: a scheme with headers to get wrong.
    forger: Signer,
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A Standard Webhooks key that only forgeries use (any valid key will do: `forge` signs
/// with loadgen's forged key).
const FORGER_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl Sender {
    pub fn new(base: &str, receiver: &Receiver) -> Result<Self, SendError> {
        let base = base.trim_end_matches('/').to_owned();
        let authority = base.split_once("://").map_or(base.as_str(), |(_, rest)| rest).split('/').next().unwrap_or_default().to_owned();
        let http = reqwest::Client::builder().timeout(Duration::from_secs_f64(receiver.request_timeout_s)).pool_idle_timeout(Duration::from_secs(4)).build()?;
        let signer = Signer::new(receiver.signing.scheme, &receiver.signing.secret)?;
        let forger = if receiver.signing.scheme == Scheme::None { Signer::new(Scheme::Standard, FORGER_KEY)? } else { signer.clone() };
        Ok(Self { http, base, authority, path: receiver.webhook_path.clone(), signer, forger })
    }

    /// Posts a genuinely signed event.
    pub async fn event(&self, e: &Event) -> Answer {
        let body = e.body();
        let headers = headers(&self.signer, &e.id, unix_now(), &body, false);
        self.post(headers, body).await
    }

    /// Posts `body` (not necessarily an event), genuinely signed under `id`.
    pub async fn raw(&self, id: &str, body: Vec<u8>) -> Answer {
        let headers = headers(&self.signer, id, unix_now(), &body, false);
        self.post(headers, body).await
    }

    pub async fn forged(&self, e: &Event, how: Forgery) -> Answer {
        let body = e.body();
        let now = unix_now();
        let headers = match how {
            Forgery::OtherKey => headers(&self.forger, &e.id, now, &body, true),
            Forgery::Unsigned => Vec::new(),
            Forgery::OtherBody => headers(&self.forger, &e.id, now, b"{}", self.forger.scheme() != self.signer.scheme()),
            Forgery::Stale => headers(&self.forger, &e.id, now - 3600, &body, self.forger.scheme() != self.signer.scheme()),
        };
        self.post(headers, body).await
    }

    /// Creates an order with the seed's body at the receiver's `create_order_path`.
    pub async fn order(&self, path: &str, id: &str, total: i64) -> Answer {
        let body = json!({"id": id, "user_id": "loadgen", "items": ["item"], "total_amount": total, "currency": "USD"});
        match self.http.post(format!("{}{path}", self.base)).json(&body).send().await {
            Ok(r) => Answer::Status(r.status().as_u16()),
            Err(e) => Answer::Broken(describe(&e)),
        }
    }

    async fn post(&self, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Answer {
        let mut req = self.http.post(format!("{}{}", self.base, self.path)).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match req.body(body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(_) => Answer::Status(status),
                    Err(e) => Answer::Broken(format!("{status}, then {}", describe(&e))),
                }
            }
            Err(e) => Answer::Broken(describe(&e)),
        }
    }

    /// Writes the whole request and closes the connection without reading the answer.
    pub async fn abandon(&self, e: &Event) -> Answer {
        let body = e.body();
        let mut request = format!("POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n", self.path, self.authority).into_bytes();
        for (k, v) in headers(&self.signer, &e.id, unix_now(), &body, false) {
            request.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        request.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(&body);
        let written = async {
            let mut s = tokio::net::TcpStream::connect(&self.authority).await?;
            s.write_all(&request).await?;
            s.flush().await
        };
        match written.await {
            Ok(()) => Answer::Abandoned,
            Err(e) => Answer::Broken(format!("connection: {e}")),
        }
    }
}

/// The signature headers of `body` under `signer`'s scheme.
fn headers(signer: &Signer, id: &str, ts: i64, body: &[u8], forge: bool) -> Vec<(&'static str, String)> {
    let mut sig = SigHeaders::default();
    signer.sign(id, ts, body, forge, &mut sig);
    match signer.scheme() {
        Scheme::None => Vec::new(),
        Scheme::Standard => vec![("webhook-id", id.to_owned()), ("webhook-timestamp", sig.timestamp), ("webhook-signature", sig.signature)],
        Scheme::Stripe => vec![("stripe-signature", sig.signature)],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

