//! What every Kafka client of ours shares, producer, consumer and admin alike: the brokers,
//! how to reach them (TLS, SASL) and the operator's own librdkafka properties, applied after
//! ours except where changing one would break a guarantee.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

/// librdkafka's `sasl.mechanism`, the ones managed brokers offer with a user and a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A password that never shows in a log line or a `Debug` print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// How the clients reach the brokers, and the operator's extra properties.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanism: Option<SaslMechanism>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<Secret>,
    pub ssl_ca_location: Option<PathBuf>,
    /// Applied to every client after our settings.
    pub properties: Vec<(String, String)>,
}

/// Properties an operator may not change, and why: each one holds up an acknowledgement
/// or the exactly-once application of events; the rest have flags of their own.
const GUARDED: [(&str, &str); 12] = [
    ("enable.idempotence", "a retried produce could be written twice or out of order"),
    ("acks", "an event would be acknowledged before every in-sync replica has it"),
    ("request.required.acks", "an event would be acknowledged before every in-sync replica has it"),
    ("enable.auto.commit", "offsets would be committed before the store has applied the events"),
    ("enable.auto.offset.store", "offsets would be committed before the store has applied the events"),
    ("auto.offset.reset", "the worker relies on where a consumer without an offset starts"),
    ("group.id", "the consumer group is --consumer"),
    ("bootstrap.servers", "use --kafka-brokers"),
    ("message.timeout.ms", "use --kafka-produce-timeout-ms"),
    ("security.protocol", "use --kafka-security-protocol"),
    ("sasl.username", "use --kafka-sasl-username"),
    ("sasl.password", "use KAFKA_SASL_PASSWORD, which is never logged"),
];

fn refusal(key: &str) -> Option<&'static str> {
    if key == "sasl.mechanism" || key == "sasl.mechanisms" {
        return Some("use --kafka-sasl-mechanism");
    }
    GUARDED.iter().find(|(k, _)| *k == key).map(|(_, why)| *why)
}

/// Parses `key=value` properties separated by commas or newlines. A piece without `=`
/// continues the previous value, so that list values (`debug=broker,topic`) stay whole.
pub fn parse_properties(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for piece in list.split([',', '\n']).map(str::trim).filter(|p| !p.is_empty()) {
        match piece.split_once('=') {
            Some((key, value)) => {
                let key = key.trim();
                if let Some(why) = refusal(key) {
                    return Err(format!("the Kafka property {key} cannot be changed: {why}"));
                }
                out.push((key.to_owned(), value.trim().to_owned()));
            }
            None => match out.last_mut() {
                Some((_, value)) => {
                    value.push(',');
                    value.push_str(piece);
                }
                None => return Err(format!("{piece:?} is not key=value")),
            },
        }
    }
    Ok(out)
}

/// The settings every client starts from: the brokers and how to reach them. The operator's
/// properties come last, through [`with_properties`], once a client has set its own.
pub fn common(brokers: &str, s: &ClientSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("security.protocol", s.security_protocol.name());
    if let Some(m) = s.sasl_mechanism {
        c.set("sasl.mechanism", m.name());
    }
    if let Some(u) = &s.sasl_username {
        c.set("sasl.username", u);
    }
    if let Some(Secret(p)) = &s.sasl_password {
        c.set("sasl.password", p);
    }
    if let Some(ca) = &s.ssl_ca_location {
        c.set("ssl.ca.location", ca.to_string_lossy());
    }
    c
}

/// Applies the operator's properties over a client's own settings.
pub fn with_properties<'a>(c: &'a mut ClientConfig, s: &ClientSettings) -> &'a mut ClientConfig {
    for (k, v) in &s.properties {
        c.set(k, v);
    }
    c
}

/// Keeps the last error librdkafka reported on its own (a refused password, a certificate
/// that does not verify): a request that then fails only says it timed out, so the reason
/// is added to its error.
#[derive(Default)]
pub struct LastError(Mutex<Option<String>>);

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, "kafka: {reason}");
        if let Ok(mut last) = self.0.lock() {
            *last = Some(reason.to_owned());
        }
    }
}

/// Only asks metadata; never produces.
impl rdkafka::producer::ProducerContext for LastError {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

impl LastError {
    /// `error`, with the last reason librdkafka gave, if any.
    pub fn explain(&self, error: impl fmt::Display) -> String {
        match self.0.lock().ok().and_then(|l| l.clone()) {
            Some(reason) => format!("{error} (last broker error: {reason})"),
            None => error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_split_on_commas_and_newlines_and_keep_list_values_whole() {
        let parsed = parse_properties("socket.keepalive.enable=true,\n debug=broker,topic\nclient.id = ours").expect("valid");
        let want = [("socket.keepalive.enable", "true"), ("debug", "broker,topic"), ("client.id", "ours")];
        assert_eq!(parsed, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert!(parse_properties("no-equals-sign").is_err());
    }

    #[test]
    fn properties_that_hold_up_a_guarantee_are_refused_with_the_reason() {
        for (key, _) in GUARDED {
            let e = parse_properties(&format!("linger.ms=5,{key}=x")).expect_err(key);
            assert!(e.contains(key) && e.contains("cannot be changed"), "{e}");
        }
        let e = parse_properties("sasl.mechanisms=PLAIN").expect_err("has a flag");
        assert!(e.contains("--kafka-sasl-mechanism"), "{e}");
    }

    #[test]
    fn the_password_reaches_the_client_but_no_debug_print() {
        let s = ClientSettings {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: Some("app".into()),
            sasl_password: Some(Secret::new("hunter2")),
            ssl_ca_location: Some("/ca.crt".into()),
            properties: vec![("client.id".into(), "x".into())],
        };
        let mut c = common("b:9094", &s);
        with_properties(&mut c, &s);
        assert_eq!(c.get("sasl.password"), Some("hunter2"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("client.id"), Some("x"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
