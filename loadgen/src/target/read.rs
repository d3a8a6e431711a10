//! A receiver's orders and payments, read one at a time (no receiver but ours has a bulk
//! lookup) with bounded concurrency. Every answer is either normalised into loadgen's terms
//! or kept as evidence: which request, what came back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::receiver::Receiver;

/// What one read found.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Found(Normal),
    /// A 404: the receiver does not know the id.
    Missing,
    /// Anything else: the request and what came back (status, a short excerpt, or the error).
    Bad(String),
}

/// An order or payment in loadgen's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Normal {
    /// Mapped through the receiver's table; a value the table lacks is kept as it came.
    pub status: String,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// The event ids recorded for a payment, when the receiver keeps a list.
    pub event_ids: Option<Vec<String>>,
}

/// Reads of many ids and how long they took.
#[derive(Debug, Default)]
pub struct Reading {
    pub observed: HashMap<String, Observed>,
    pub took: Duration,
}

#[derive(Clone, Copy)]
enum Entity {
    Order,
    Payment,
}

#[derive(Clone)]
pub struct Reader {
    http: reqwest::Client,
    base: String,
    receiver: Arc<Receiver>,
    token: Option<String>,
}

/// The longest excerpt of a bad answer kept as evidence.
const EXCERPT: usize = 160;

pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(EXCERPT).collect();
    if text.chars().count() > EXCERPT {
        s.push('…');
    }
    s
}

impl Reader {
    pub fn new(base: &str, receiver: &Receiver, token: Option<String>) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs_f64(receiver.request_timeout_s)).pool_idle_timeout(Duration::from_secs(4)).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), receiver: Arc::new(receiver.clone()), token })
    }

    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    pub async fn orders(&self, ids: &[String]) -> Reading {
        self.many(Entity::Order, ids).await
    }

    pub async fn payments(&self, ids: &[String]) -> Reading {
        self.many(Entity::Payment, ids).await
    }

    async fn many(&self, what: Entity, ids: &[String]) -> Reading {
        let started = Instant::now();
        let sem = Arc::new(Semaphore::new(self.receiver.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let (me, id, sem) = (self.clone(), id.clone(), sem.clone());
            tasks.spawn(async move {
                // The semaphore is never closed.
                let _permit = sem.acquire_owned().await.ok();
                let seen = me.one(what, &id).await;
                (id, seen)
            });
        }
        let mut observed = HashMap::with_capacity(ids.len());
        while let Some(done) = tasks.join_next().await {
            if let Ok((id, seen)) = done {
                observed.insert(id, seen);
            }
        }
        Reading { observed, took: started.elapsed() }
    }

    async fn one(&self, what: Entity, id: &str) -> Observed {
        let template = match what {
            Entity::Order => &self.receiver.order_path,
            Entity::Payment => &self.receiver.payment_path,
        };
        let path = Receiver::path(template, id);
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let answer = match req.send().await {
            Ok(r) => r,
            Err(e) => return Observed::Bad(format!("GET {path}: {}", describe(&e))),
        };
        let status = answer.status();
        let body = match answer.bytes().await {
            Ok(b) => b,
            Err(e) => return Observed::Bad(format!("GET {path}: {status}, then {}", describe(&e))),
        };
        if status == reqwest::StatusCode::NOT_FOUND {
            return Observed::Missing;
        }
        if !status.is_success() {
            return Observed::Bad(format!("GET {path}: {status} {}", excerpt(&body)));
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => self.normalise(what, &v).map_or_else(|missing| Observed::Bad(format!("GET {path}: {missing} in {}", excerpt(&body))), Observed::Found),
            Err(_) => Observed::Bad(format!("GET {path}: {status} but not JSON: {}", excerpt(&body))),
        }
    }

    /// The fields the mapping names, or which one the answer lacks.
    fn normalise(&self, what: Entity, v: &Value) -> Result<Normal, String> {
        let r = &*self.receiver;
        let raw = v.get(&r.status_field).and_then(Value::as_str).ok_or_else(|| format!("no string `{}`", r.status_field))?;
        let table = match what {
            Entity::Order => &r.order_statuses,
            Entity::Payment => &r.payment_statuses,
        };
        let status = table.get(raw).cloned().unwrap_or_else(|| raw.to_owned());
        let (amount, currency, event_ids) = match what {
            Entity::Order => (None, None, None),
            Entity::Payment => {
                let events = r.events_field.as_ref().map(|f| v.get(f).and_then(Value::as_array).map(|list| list.iter().filter_map(|e| e["event_id"].as_str().map(str::to_owned)).collect()));
                let events = match events {
                    Some(None) => return Err(format!("no list `{}`", r.events_field.as_deref().unwrap_or_default())),
                    Some(Some(list)) => Some(list),
                    None => None,
                };
                (v.get(&r.amount_field).and_then(Value::as_i64), v.get(&r.currency_field).and_then(Value::as_str).map(str::to_owned), events)
            }
        };
        Ok(Normal { status, amount, currency, event_ids })
    }
}

/// A transport error as a person reads it: hung, refused, closed, or not HTTP.
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "no answer in time (hung)"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_body() || e.is_decode() {
        "the answer's body broke off"
    } else {
        "connection closed or the answer was not HTTP"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({detail})")
    }
}

/// Waits up to 30 s for the receiver to answer: its health path with a 2xx, or without
/// one, any HTTP answer to an order read.
pub async fn wait_ready(base: &str, receiver: &Receiver) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let path = receiver.health_path.clone().unwrap_or_else(|| Receiver::path(&receiver.order_path, "loadgen-ready-check"));
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match http.get(&url).send().await {
            Ok(r) if receiver.health_path.is_none() || r.status().is_success() => return Ok(()),
            Ok(r) => last = r.status().to_string(),
            Err(e) => last = describe(&e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("GET {path} on {base}: not ready within 30 s (last: {last})")
}
