//! Command-line flags, each with an environment variable, validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::queue::cap::Limit;
use crate::queue::embedded::EmbeddedConfig;
use crate::queue::kafka::client::{parse_properties, ClientSettings, SaslMechanism, Secret, SecurityProtocol};
use crate::queue::spool::SpoolConfig;
use crate::worker::{RetryPolicy, WorkerConfig};

/// Where data lives; shared by every subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Storage")]
pub struct StorageArgs {
    /// Directory for the embedded queue and the default SQLite database.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL: sqlite://PATH (default: DATA_DIR/store.db) or postgres://USER:PASS@HOST/DB.
    #[arg(long = "database", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 8)]
    pub database_pool_size: usize,

    #[command(flatten)]
    pub kafka: KafkaArgs,
}

const KAFKA_HEADING: &str = "Kafka (instead of the embedded queue)";

/// The Kafka queue, instead of the embedded log.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = KAFKA_HEADING)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...); switches the queue from the embedded log to Kafka.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Kafka topic for payment events; dead letters go to `<topic>.dlq`.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "payment-events")]
    pub kafka_topic: String,

    /// Partitions of the topics when they are created.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 6)]
    pub kafka_partitions: i32,

    /// Replication factor of the topics when they are created [default: one per broker, at most 3].
    #[arg(long, env = "KAFKA_REPLICATION_FACTOR")]
    pub kafka_replication_factor: Option<i32>,

    /// min.insync.replicas of the topics when they are created: with acks=all, a write is
    /// acknowledged only once this many replicas have it [default: 2 with 3 replicas or more, else 1].
    #[arg(long, env = "KAFKA_MIN_INSYNC_REPLICAS")]
    pub kafka_min_insync_replicas: Option<i32>,

    #[arg(long, env = "KAFKA_PRODUCE_TIMEOUT_MS", default_value_t = 5_000, help = PRODUCE_TIMEOUT_HELP)]
    pub kafka_produce_timeout_ms: u64,

    /// Under load, the server sends a group of events to the broker at most once per this many
    /// microseconds, so that a produce request carries more of them; adds up to that much to an
    /// acknowledgement. An event after a quiet moment, or from a lone client, is sent at once.
    /// 0 sends each group as soon as the previous one is acknowledged.
    #[arg(long, env = "KAFKA_FLUSH_INTERVAL_US", default_value_t = 2_000)]
    pub kafka_flush_interval_us: u64,

    /// How the clients reach the brokers: TLS (ssl), SASL, or both (sasl_ssl).
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_enum, default_value_t = SecurityProtocol::Plaintext)]
    pub kafka_security_protocol: SecurityProtocol,

    /// SASL mechanism; needed with sasl_plaintext and sasl_ssl.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_enum, required_if_eq_any = SASL_PROTOCOLS)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name; needed with sasl_plaintext and sasl_ssl.
    #[arg(long, env = "KAFKA_SASL_USERNAME", required_if_eq_any = SASL_PROTOCOLS)]
    pub kafka_sasl_username: Option<String>,

    /// SASL password; set it in the environment rather than on the command line. Never logged.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true, required_if_eq_any = SASL_PROTOCOLS)]
    pub kafka_sasl_password: Option<Secret>,

    /// CA certificates (PEM) the brokers' certificates are verified with [default: the system's].
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,

    /// A librdkafka property for every client (producer, consumer, admin), applied after ours:
    /// `key=value`, repeatable; the variable takes several, separated by commas or newlines.
    /// Properties our guarantees rest on (acks, idempotence, offset commits) are refused.
    #[arg(long, env = "KAFKA_PROPERTIES", value_name = "KEY=VALUE", value_parser = kafka_properties)]
    pub kafka_property: Vec<KafkaProperties>,

    /// Create the topics at start when missing (needs the right to create topics). With
    /// false, start only if the topic exists with --kafka-partitions partitions, and its `.dlq` too.
    #[arg(long, env = "KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_create_topics: bool,

    /// retention.ms of the topics when they are created: past the worker's longest possible
    /// outage, or acknowledged events are deleted before they are applied.
    #[arg(long, env = "KAFKA_RETENTION_MS", default_value_t = crate::queue::kafka::DEFAULT_RETENTION.as_millis() as u64)]
    pub kafka_retention_ms: u64,

    /// The worker warns (log, /readyz) once its oldest unapplied event is older than this
    /// fraction of the topic's retention.
    #[arg(long, env = "KAFKA_RETENTION_WARN_FRACTION", default_value_t = 0.5)]
    pub kafka_retention_warn_fraction: f64,
}

const SASL_PROTOCOLS: [(&str, &str); 2] = [("kafka_security_protocol", "sasl_plaintext"), ("kafka_security_protocol", "sasl_ssl")];

/// The `key=value` pairs of one `--kafka-property` (or of KAFKA_PROPERTIES, several at once).
#[derive(Debug, Clone)]
pub struct KafkaProperties(Vec<(String, String)>);

fn kafka_properties(list: &str) -> Result<KafkaProperties, String> {
    parse_properties(list).map(KafkaProperties)
}

/// One text for the flag's help and docs/configuration.md, which quotes it (system/tests/docs.rs).
pub const PRODUCE_TIMEOUT_HELP: &str = "A produce not acknowledged by the broker within this many milliseconds \
    goes to the spool (answered 200); with --spool false, or the spool full, it gets 503";

impl StorageArgs {
    pub fn embedded_queue(&self, server: Option<&ServerArgs>) -> EmbeddedConfig {
        let mut cfg = EmbeddedConfig::in_dir(&self.data_dir);
        if let Some(s) = server {
            cfg.max_pending = s.queue_max_pending;
            cfg.append_timeout = Duration::from_millis(s.append_timeout_ms);
            cfg.segment_bytes = s.queue_segment_bytes;
            cfg.min_sync_interval = Duration::from_micros(s.queue_sync_interval_us);
            cfg.cap = Limit { bytes: s.max_log_bytes, flag: "--max-log-bytes" };
        }
        cfg
    }

    /// The broker-outage spool of a Kafka-mode server, when enabled.
    pub fn spool(&self, server: &ServerArgs) -> Option<SpoolConfig> {
        let log = EmbeddedConfig {
            dir: self.data_dir.join("spool"),
            legacy: self.data_dir.join("spool.db"),
            cap: Limit { bytes: server.max_spool_bytes, flag: "--max-spool-bytes" },
            ..self.embedded_queue(Some(server))
        };
        (server.spool && self.kafka().is_some()).then_some(SpoolConfig { log, max_events: server.spool_max_events.max(1) })
    }

    pub fn kafka(&self) -> Option<crate::queue::kafka::KafkaConfig> {
        let k = &self.kafka;
        k.kafka_brokers.as_ref().filter(|b| !b.is_empty()).map(|brokers| crate::queue::kafka::KafkaConfig {
            brokers: brokers.clone(),
            topic: k.kafka_topic.clone(),
            partitions: k.kafka_partitions.max(1),
            replication_factor: k.kafka_replication_factor.map(|r| r.max(1)),
            min_insync_replicas: k.kafka_min_insync_replicas.map(|m| m.max(1)),
            produce_timeout: Duration::from_millis(k.kafka_produce_timeout_ms.max(1)),
            flush_interval: Duration::from_micros(k.kafka_flush_interval_us),
            client: ClientSettings {
                security_protocol: k.kafka_security_protocol,
                sasl_mechanism: k.kafka_sasl_mechanism,
                sasl_username: k.kafka_sasl_username.clone(),
                sasl_password: k.kafka_sasl_password.clone(),
                ssl_ca_location: k.kafka_ssl_ca_location.clone(),
                properties: k.kafka_property.iter().flat_map(|p| p.0.iter().cloned()).collect(),
            },
            create_topics: k.kafka_create_topics,
            retention: Duration::from_millis(k.kafka_retention_ms.max(1)),
            retention_warn_fraction: k.kafka_retention_warn_fraction.clamp(0.0, 1.0),
        })
    }

    /// Which store the database URL names; SQLite under the data directory by default.
    pub fn database(&self) -> Result<Database, ConfigError> {
        match self.database_url.as_deref() {
            None => Ok(Database::Sqlite(self.data_dir.join("store.db"))),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(Database::Postgres(url.to_owned())),
            Some(url) => url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .map(|p| Database::Sqlite(PathBuf::from(p)))
                .ok_or_else(|| ConfigError::UnsupportedDatabase(scheme_of(url))),
        }
    }
}

fn has_secret(list: &str) -> bool {
    crate::ingress::signature::split(list).next().is_some()
}

fn scheme_of(url: &str) -> String {
    // Never echo the whole URL: it may carry a password.
    url.split("://").next().unwrap_or_default().to_owned()
}

/// The store a database URL names.
pub enum Database {
    Sqlite(PathBuf),
    /// The URL, which may carry a password: never log it.
    Postgres(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unsupported database URL scheme {0:?} (expected sqlite://PATH or postgres://...)")]
    UnsupportedDatabase(String),
    #[error("invalid signature secret: {0}")]
    Secret(#[from] crate::ingress::signature::SecretError),
    #[error("refusing to listen on {addr}, an address other machines can reach, with{}\n\
             Set what is missing, listen on 127.0.0.1 to reach it from this machine only, \
             or pass --insecure (INSECURE=true) to leave it open on purpose.", Surface::list(.open))]
    Exposed { addr: SocketAddr, open: Vec<Surface> },
}

/// A part of the API that anyone who reaches the port may use, for want of its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    UnsignedWebhooks,
    OpenManagementApi,
}

impl Surface {
    /// How `/readyz` names it.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnsignedWebhooks => "unsigned_webhooks",
            Self::OpenManagementApi => "open_management_api",
        }
    }

    /// What an operator reads at start: what is open, and so what anyone can do.
    pub fn warning(self) -> &'static str {
        match self {
            Self::UnsignedWebhooks => "no WEBHOOK_SECRET or STRIPE_WEBHOOK_SECRET configured: unsigned webhooks are accepted",
            Self::OpenManagementApi => "no ADMIN_TOKEN configured: the management API (orders, payments, dead letters and \
                                        their replay, stats) is open to anyone who can reach the port",
        }
    }

    /// What is missing, what anyone could do without it, and how to set it.
    fn remedy(self) -> &'static str {
        match self {
            Self::UnsignedWebhooks => "no webhook secret: anyone could send payment events, such as marking an order paid. \
                                       Set WEBHOOK_SECRET (--webhook-secret) to the provider's Standard Webhooks secret \
                                       (whsec_<base64>), or STRIPE_WEBHOOK_SECRET (--stripe-webhook-secret) to Stripe's \
                                       signing secret",
            Self::OpenManagementApi => "no admin token: anyone could read payments and orders and replay dead letters. \
                                        Set ADMIN_TOKEN (--admin-token) to a long random string, such as the output of \
                                        `openssl rand -hex 32`",
        }
    }

    fn list(open: &[Surface]) -> String {
        open.iter().map(|s| format!("\n  - {}", s.remedy())).collect()
    }
}

/// What a server leaves open, decided at start from its secrets and the address it listens on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Open surfaces; on loopback only this machine reaches them.
    pub open: Vec<Surface>,
    /// Open surfaces on an address other machines can reach, allowed by `--insecure`.
    pub insecure: bool,
}

impl Exposure {
    /// One warning per open surface, and a louder one when `--insecure` is what let it start.
    pub fn warn(&self, addr: SocketAddr) {
        for surface in &self.open {
            tracing::warn!("{}", surface.warning());
        }
        if self.insecure {
            tracing::warn!(%addr, "--insecure: listening with the surfaces above open on an address other machines \
                                   can reach; anyone who reaches it can forge payments or read and replay them");
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP server")]
pub struct ServerArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Connections the kernel may hold for the server before it accepts them (capped by
    /// net.core.somaxconn). Too few, and a burst of new connections waits for SYN retransmits.
    #[arg(long, env = "LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,

    /// Standard Webhooks secrets (whsec_<base64>), comma-separated for rotation.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true, default_value = "")]
    pub webhook_secret: String,

    /// Stripe-style signing secrets, comma-separated for rotation.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true, default_value = "")]
    pub stripe_webhook_secret: String,

    /// The metadata key on Stripe's PaymentIntents, charges and disputes that names the order.
    #[arg(help_heading = "Stripe", long, env = "STRIPE_ORDER_KEY", default_value = crate::domain::stripe::DEFAULT_ORDER_KEY)]
    pub stripe_order_key: String,

    /// Which of Stripe's modes this endpoint serves: `true` for live events, `false` for test
    /// events. An event of the other mode is refused (422), so test data never pays a real order.
    #[arg(help_heading = "Stripe", long, env = "STRIPE_LIVEMODE", default_value_t = false, action = clap::ArgAction::Set)]
    pub stripe_livemode: bool,

    /// How far a signature's timestamp may be from now, in seconds (replay protection).
    #[arg(long, env = "SIGNATURE_TOLERANCE_SECS", default_value_t = 300)]
    pub signature_tolerance_secs: u64,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = crate::ingress::DEFAULT_MAX_BODY)]
    pub max_body_bytes: usize,

    /// Appends waiting for the embedded queue beyond this are refused with 503.
    #[arg(help_heading = "Embedded queue", long, env = "QUEUE_MAX_PENDING", default_value_t = 50_000)]
    pub queue_max_pending: usize,

    /// An append not durable within this many milliseconds is answered 503.
    #[arg(help_heading = "Embedded queue", long, env = "APPEND_TIMEOUT_MS", default_value_t = 5_000)]
    pub append_timeout_ms: u64,

    /// The embedded log rolls to a new segment file past this many bytes; consumed events
    /// are deleted a whole segment at a time, after the store has synced their effects.
    #[arg(help_heading = "Embedded queue", long, env = "QUEUE_SEGMENT_BYTES", default_value_t = crate::queue::log::DEFAULT_SEGMENT_BYTES)]
    pub queue_segment_bytes: u64,

    /// Under load, the embedded log syncs at most once per this many microseconds, so that a
    /// group carries more events per fsync; adds up to that much to an acknowledgement. An
    /// event after a quiet moment, or from a lone client, is synced at once. 0 syncs back to back.
    #[arg(help_heading = "Embedded queue", long, env = "QUEUE_SYNC_INTERVAL_US", default_value_t = 2_000)]
    pub queue_sync_interval_us: u64,

    /// Past this many bytes in the embedded log, webhooks get 503 + Retry-After (the provider
    /// retries them) until the worker has applied events and their segments are deleted
    /// [default: half the size of the data directory's filesystem, leaving the rest to the store].
    #[arg(help_heading = "Embedded queue", long, env = "MAX_LOG_BYTES")]
    pub max_log_bytes: Option<u64>,

    /// Bearer token required by management and read endpoints (orders, payments, stats,
    /// dead letters); unset leaves them open, which only a loopback --listen allows.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Start on an address other machines can reach even without a webhook secret or an admin
    /// token: anyone who reaches the port can then forge payments, or read and replay them.
    /// For a closed network you trust; shown in the start-up log, /readyz and the console.
    #[arg(long, env = "INSECURE", value_parser = clap::builder::FalseyValueParser::new())]
    pub insecure: bool,

    /// Requests in flight beyond this are answered 429 at once.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,

    /// Requests taking longer than this many milliseconds (body read included) get 408.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Connections whose request headers take longer than this many milliseconds are closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// On SIGTERM, fail /readyz but keep serving (new requests included) for this many
    /// milliseconds, so that the load balancer stops sending before the listener closes; then
    /// finish the requests in flight and stop. Set it to the load balancer's deregistration delay.
    #[arg(long, env = "SHUTDOWN_DRAIN_MS", default_value_t = 0)]
    pub shutdown_drain_ms: u64,

    /// Kafka mode: when the broker cannot take an event, store it in a local durable spool
    /// under the data directory and answer 200; it is forwarded when the broker is back.
    /// `--spool false` answers 503 instead and leaves the retry to the provider.
    #[arg(help_heading = KAFKA_HEADING, long, env = "SPOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub spool: bool,

    /// Kafka mode: past this many spooled events, webhooks get 503.
    #[arg(help_heading = KAFKA_HEADING, long, env = "SPOOL_MAX_EVENTS", default_value_t = 1_000_000)]
    pub spool_max_events: u64,

    /// Kafka mode: past this many bytes in the spool, webhooks get 503 + Retry-After until the
    /// spool's events reach the broker [default: half the size of the data directory's filesystem].
    #[arg(help_heading = KAFKA_HEADING, long, env = "MAX_SPOOL_BYTES")]
    pub max_spool_bytes: Option<u64>,
}

impl ServerArgs {
    pub fn stripe(&self) -> crate::ingress::stripe::StripeSettings {
        crate::ingress::stripe::StripeSettings { order_key: self.stripe_order_key.clone(), livemode: self.stripe_livemode }
    }

    /// The admin token, if one is set; an empty one guards nothing.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref().filter(|t| !t.is_empty())
    }

    /// What listening on `addr` leaves open; refused when other machines can reach `addr`,
    /// unless `--insecure`.
    pub fn exposure(&self, addr: SocketAddr) -> Result<Exposure, ConfigError> {
        let unsigned = !has_secret(&self.webhook_secret) && !has_secret(&self.stripe_webhook_secret);
        let open: Vec<Surface> = [(unsigned, Surface::UnsignedWebhooks), (self.admin_token().is_none(), Surface::OpenManagementApi)]
            .into_iter()
            .filter_map(|(open, surface)| open.then_some(surface))
            .collect();
        // `to_canonical`: an IPv4-mapped ::ffff:127.0.0.1 is loopback too.
        let reachable = !addr.ip().to_canonical().is_loopback() && !open.is_empty();
        if reachable && !self.insecure {
            return Err(ConfigError::Exposed { addr, open });
        }
        Ok(Exposure { open, insecure: reachable })
    }

    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_ms)
    }

    pub fn limits(&self) -> crate::ingress::Limits {
        crate::ingress::Limits {
            max_in_flight: self.max_in_flight,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            header_timeout: Duration::from_millis(self.header_read_timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Worker")]
pub struct WorkerArgs {
    /// Name under which the worker's queue positions are stored (the Kafka consumer group).
    #[arg(long, env = "WORKER_CONSUMER", default_value = "webhooks-worker")]
    pub consumer: String,

    /// Most events applied in one database transaction.
    #[arg(long, env = "WORKER_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,

    /// While events keep arriving, a batch waits up to this many milliseconds to fill, so
    /// that one transaction carries many events; after a quiet moment an event is applied
    /// at once. 0 applies whatever one poll returns.
    #[arg(long, env = "WORKER_BATCH_LINGER_MS", default_value_t = 2)]
    pub batch_linger_ms: u64,

    /// Attempts on transient errors before an event is dead-lettered.
    #[arg(long, env = "WORKER_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: u32,

    /// First retry delay ceiling in milliseconds (doubles per attempt, with full jitter).
    #[arg(long, env = "WORKER_RETRY_BASE_MS", default_value_t = 50)]
    pub retry_base_ms: u64,

    /// Largest retry delay in milliseconds.
    #[arg(long, env = "WORKER_RETRY_CAP_MS", default_value_t = 5_000)]
    pub retry_cap_ms: u64,

    /// A worker whose loop has not advanced (polled or applied) for this many seconds reports
    /// itself stalled: its /readyz fails, and webhooks_worker_seconds_since_progress shows it.
    #[arg(long, env = "WORKER_STALL_SECS", default_value_t = crate::health::DEFAULT_STALL_AFTER.as_secs())]
    pub stall_secs: u64,

    /// Start even though the store is behind the embedded log's oldest segment (restored from
    /// an older backup, or it lost commits): resume at the oldest segment, accepting that the
    /// events between are gone, and have the provider resend them. Without it the worker
    /// refuses to start and says which offsets are missing.
    #[arg(long, env = "WORKER_ACCEPT_LOG_GAP", value_parser = clap::builder::FalseyValueParser::new())]
    pub accept_log_gap: bool,

    /// Delete the record of events applied more than this many days ago (0 keeps them
    /// forever). Never under 3 days, Stripe's retry window: an event id must recognise every
    /// redelivery. Payments and orders are kept.
    #[arg(long, env = "RETAIN_APPLIED_DAYS", default_value_t = 0)]
    pub retain_applied_days: u64,

    /// Delete dead letters replayed more than this many days ago (0 keeps them forever); those
    /// never replayed wait for an operator and are kept.
    #[arg(long, env = "RETAIN_DEAD_LETTERS_DAYS", default_value_t = 0)]
    pub retain_dead_letters_days: u64,
}

impl WorkerArgs {
    pub fn retention(&self) -> crate::retention::Retention {
        crate::retention::Retention::from_days(self.retain_applied_days, self.retain_dead_letters_days)
    }

    pub fn stall_after(&self) -> Duration {
        Duration::from_secs(self.stall_secs.max(1))
    }

    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            consumer: self.consumer.clone(),
            batch_size: self.batch_size.max(1),
            linger: Duration::from_millis(self.batch_linger_ms),
            poll_wait: Duration::from_millis(100),
            retry: RetryPolicy {
                base: Duration::from_millis(self.retry_base_ms.max(1)),
                cap: Duration::from_millis(self.retry_cap_ms.max(1)),
                max_attempts: self.max_attempts.max(1),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn exposure(args: &[&str], addr: &str) -> Result<Exposure, ConfigError> {
        let flags = Flags::try_parse_from([&["webhooks"], args].concat()).expect("flags parse");
        flags.server.exposure(addr.parse().expect("socket address"))
    }

    const SECRETS: [&str; 4] = ["--webhook-secret", "whsec_c2VjcmV0", "--admin-token", "t0ken"];

    #[test]
    fn loopback_may_stay_open_and_says_what_is() {
        for addr in ["127.0.0.1:3000", "127.9.9.9:1", "[::1]:3000", "[::ffff:127.0.0.1]:3000"] {
            let open = exposure(&[], addr).expect("loopback starts");
            assert_eq!(open, Exposure { open: vec![Surface::UnsignedWebhooks, Surface::OpenManagementApi], insecure: false }, "{addr}");
        }
    }

    #[test]
    fn a_reachable_address_needs_every_secret_or_insecure() {
        let Err(ConfigError::Exposed { open, .. }) = exposure(&["--admin-token", "t0ken"], "0.0.0.0:3000") else { panic!("not refused") };
        assert_eq!(open, [Surface::UnsignedWebhooks]);
        let Err(ConfigError::Exposed { open, .. }) = exposure(&["--stripe-webhook-secret", "whsec_x", "--admin-token", ""], "[::]:3000") else {
            panic!("not refused")
        };
        assert_eq!(open, [Surface::OpenManagementApi], "an empty token guards nothing");
        let Err(ConfigError::Exposed { open, .. }) = exposure(&["--webhook-secret", " , ", "--admin-token", "t0ken"], "10.0.0.1:3000") else {
            panic!("not refused")
        };
        assert_eq!(open, [Surface::UnsignedWebhooks], "blank secrets are none");
        assert_eq!(exposure(&SECRETS, "0.0.0.0:3000").expect("all set"), Exposure::default());
        assert!(exposure(&["--insecure"], "0.0.0.0:3000").expect("insecure").insecure);
        assert!(!exposure(&[&SECRETS[..], &["--insecure"]].concat(), "0.0.0.0:3000").expect("all set").insecure, "nothing open");
    }

    #[test]
    fn the_log_and_the_spool_have_byte_caps_of_their_own() {
        #[derive(Parser)]
        struct Both {
            #[command(flatten)]
            storage: StorageArgs,
            #[command(flatten)]
            server: ServerArgs,
        }
        let both = Both::try_parse_from(["webhooks", "--max-log-bytes", "1000", "--max-spool-bytes", "2000", "--kafka-brokers", "k:9092"]).expect("flags parse");
        assert_eq!(both.storage.embedded_queue(Some(&both.server)).cap, Limit { bytes: Some(1000), flag: "--max-log-bytes" });
        assert_eq!(both.storage.spool(&both.server).expect("a spool").log.cap, Limit { bytes: Some(2000), flag: "--max-spool-bytes" });
        let defaults = Both::try_parse_from(["webhooks"]).expect("flags parse");
        assert_eq!(defaults.storage.embedded_queue(Some(&defaults.server)).cap.bytes, None, "a share of the disk, found at start");
    }

    #[test]
    fn the_refusal_says_what_is_missing_and_how_to_set_it() {
        let refused = exposure(&[], "0.0.0.0:3000").expect_err("refused").to_string();
        for needed in ["0.0.0.0:3000", "WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET", "ADMIN_TOKEN", "openssl rand -hex 32", "--insecure", "INSECURE=true"] {
            assert!(refused.contains(needed), "{needed} not in: {refused}");
        }
    }
}
