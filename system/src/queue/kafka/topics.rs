//! Creating the topic and its dead-letter topic with the replication users run in production:
//! three copies, and a write acknowledged (`acks=all`) only once two of them have it, and an
//! explicit retention; or, on a managed cluster without the right to create topics, checking
//! that the operator made them.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::util::Timeout;

use super::client::{self, LastError};
use super::{unavailable, KafkaConfig};
use crate::queue::QueueError;

/// What the topics are created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSettings {
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
}

impl TopicSettings {
    /// Unset values follow the cluster: one copy per broker up to three, and two copies
    /// needed for a write once there are three (so one broker may fail without stopping
    /// writes or losing an acknowledged one).
    pub fn for_cluster(brokers: usize, replication_factor: Option<i32>, min_insync_replicas: Option<i32>) -> Result<Self, QueueError> {
        let replication_factor = replication_factor.unwrap_or_else(|| i32::try_from(brokers).unwrap_or(i32::MAX).clamp(1, 3));
        let min_insync_replicas = min_insync_replicas.unwrap_or(if replication_factor >= 3 { 2 } else { 1 });
        if min_insync_replicas > replication_factor {
            return Err(QueueError::Unavailable(format!(
                "min.insync.replicas {min_insync_replicas} above the replication factor {replication_factor}: every produce would fail"
            )));
        }
        if replication_factor > 1 && min_insync_replicas == replication_factor {
            tracing::warn!(replication_factor, "min.insync.replicas equals the replication factor: one broker down stops every write");
        }
        if replication_factor == 1 && brokers > 1 {
            tracing::warn!(brokers, "replication factor 1 on a cluster: a broker lost loses the events acknowledged on it");
        }
        Ok(Self { replication_factor, min_insync_replicas })
    }
}

/// Makes sure the topic and its dead-letter topic are there before anything is produced
/// or consumed: created when absent (`--kafka-create-topics`), else only checked, which
/// needs no admin rights.
pub async fn ensure_topics(cfg: &KafkaConfig) -> Result<(), QueueError> {
    if cfg.create_topics {
        create_topics(cfg).await
    } else {
        check_topics(cfg).await
    }
}

fn config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = client::common(&cfg.brokers, &cfg.client);
    client::with_properties(&mut c, &cfg.client);
    c
}

fn admin(cfg: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, QueueError> {
    config(cfg).create().map_err(unavailable)
}

/// Creates the topics when absent; an existing topic keeps its settings (Kafka does not
/// change them on create), so a weaker one is reported.
async fn create_topics(cfg: &KafkaConfig) -> Result<(), QueueError> {
    let view = cluster_view(cfg, cfg.topic.clone()).await?;
    let settings = TopicSettings::for_cluster(view.brokers, cfg.replication_factor, cfg.min_insync_replicas)?;
    if let Some(replicas) = view.replicas.filter(|r| *r < settings.replication_factor) {
        tracing::warn!(topic = %cfg.topic, replicas, wanted = settings.replication_factor, "the topic exists with fewer replicas than configured; Kafka keeps them");
    }
    let min_isr = settings.min_insync_replicas.to_string();
    let retention_ms = cfg.retention.as_millis().to_string();
    let (main, dlq) = (cfg.topic.clone(), cfg.dlq_topic());
    let topics: Vec<NewTopic<'_>> = [&main, &dlq]
        .into_iter()
        .map(|t| {
            NewTopic::new(t, cfg.partitions, TopicReplication::Fixed(settings.replication_factor))
                .set("min.insync.replicas", &min_isr)
                .set("retention.ms", &retention_ms)
        })
        .collect();
    for result in admin(cfg)?.create_topics(&topics, &admin_options()).await.map_err(unavailable)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(QueueError::Unavailable(format!("cannot create topic {topic}: {code}"))),
        }
    }
    tracing::info!(topic = %cfg.topic, replication_factor = settings.replication_factor, min_insync_replicas = settings.min_insync_replicas, "kafka topics ready");
    Ok(())
}

/// Without the right to create topics, the operator made them: they must exist, the main
/// one with the partitions configured (events of one order must keep one partition).
async fn check_topics(cfg: &KafkaConfig) -> Result<(), QueueError> {
    for (topic, want) in [(cfg.topic.clone(), Some(cfg.partitions)), (cfg.dlq_topic(), None)] {
        let view = cluster_view(cfg, topic.clone()).await?;
        match (view.partitions, want) {
            (None, _) => {
                return Err(QueueError::Unavailable(format!(
                    "the Kafka topic {topic} does not exist and --kafka-create-topics is false: create it ({} partitions, retention.ms {}) or let webhooks create it",
                    cfg.partitions,
                    cfg.retention.as_millis()
                )))
            }
            (Some(n), Some(want)) if n != want => {
                return Err(QueueError::Unavailable(format!("the Kafka topic {topic} has {n} partitions but --kafka-partitions is {want}")))
            }
            _ => {}
        }
    }
    tracing::info!(topic = %cfg.topic, partitions = cfg.partitions, "kafka topics exist (not created: --kafka-create-topics false)");
    Ok(())
}

/// The topic's effective `retention.ms` as the broker applies it (its own, or the
/// broker's default): `None` when it keeps everything. Unreadable (no DescribeConfigs
/// right), the configured one is assumed, and said.
pub async fn effective_retention(cfg: &KafkaConfig) -> Result<Option<Duration>, QueueError> {
    let described = admin(cfg)?.describe_configs(&[ResourceSpecifier::Topic(&cfg.topic)], &admin_options()).await;
    let value = described
        .ok()
        .and_then(|mut r| r.pop())
        .and_then(Result::ok)
        .and_then(|c| c.get("retention.ms").and_then(|e| e.value.clone()))
        .and_then(|v| v.parse::<i64>().ok());
    Ok(match value {
        Some(ms) if ms < 0 => None,
        Some(ms) => Some(Duration::from_millis(ms as u64)),
        None => {
            tracing::warn!(topic = %cfg.topic, assumed_ms = cfg.retention.as_millis() as u64, "cannot read the topic's retention.ms; assuming --kafka-retention-ms");
            Some(cfg.retention)
        }
    })
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(10)))).request_timeout(Some(Timeout::After(Duration::from_secs(10))))
}

/// What the metadata says: how many brokers the cluster has, and for the topic, if it
/// exists, its replicas and partitions.
struct ClusterView {
    brokers: usize,
    replicas: Option<i32>,
    partitions: Option<i32>,
}

/// Asked through a client of its own whose events are read: when the request fails, the
/// broker's reason (a refused password, a certificate that does not verify) comes with it.
async fn cluster_view(cfg: &KafkaConfig, topic: String) -> Result<ClusterView, QueueError> {
    let probe: BaseProducer<LastError> = config(cfg).create_with_context(LastError::default()).map_err(unavailable)?;
    tokio::task::spawn_blocking(move || {
        let md = probe.client().fetch_metadata(Some(&topic), Duration::from_secs(10)).map_err(|e| {
            probe.poll(Duration::from_millis(100));
            QueueError::Unavailable(format!("cannot reach Kafka: {}", probe.context().explain(e)))
        })?;
        let found = md.topics().iter().find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(ClusterView {
            brokers: md.brokers().len(),
            replicas: found.and_then(|t| t.partitions().first()).map(|p| count(p.replicas().len())),
            partitions: found.map(|t| count(t.partitions().len())),
        })
    })
    .await
    .map_err(|e| QueueError::Unavailable(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(brokers: usize) -> TopicSettings {
        TopicSettings::for_cluster(brokers, None, None).expect("valid")
    }

    #[test]
    fn unset_settings_follow_the_cluster() {
        assert_eq!(auto(1), TopicSettings { replication_factor: 1, min_insync_replicas: 1 });
        assert_eq!(auto(2), TopicSettings { replication_factor: 2, min_insync_replicas: 1 });
        assert_eq!(auto(3), TopicSettings { replication_factor: 3, min_insync_replicas: 2 });
        assert_eq!(auto(7), TopicSettings { replication_factor: 3, min_insync_replicas: 2 });
    }

    #[test]
    fn explicit_settings_win_and_impossible_ones_are_refused() {
        let s = TopicSettings::for_cluster(3, Some(1), None).expect("valid");
        assert_eq!(s, TopicSettings { replication_factor: 1, min_insync_replicas: 1 });
        let s = TopicSettings::for_cluster(5, Some(5), Some(3)).expect("valid");
        assert_eq!(s, TopicSettings { replication_factor: 5, min_insync_replicas: 3 });
        assert!(TopicSettings::for_cluster(3, Some(2), Some(3)).is_err());
    }
}
