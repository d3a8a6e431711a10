//! Creating the topic and its dead-letter topic with the replication users run in production:
//! three copies, and a write acknowledged (`acks=all`) only once two of them have it.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::util::Timeout;

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

/// Creates the topic and its dead-letter topic when absent; an existing topic keeps its
/// settings (Kafka does not change them on create), so a weaker one is reported.
pub async fn ensure_topics(cfg: &KafkaConfig) -> Result<TopicSettings, QueueError> {
    let admin: Arc<AdminClient<DefaultClientContext>> =
        Arc::new(ClientConfig::new().set("bootstrap.servers", &cfg.brokers).create().map_err(unavailable)?);
    let (brokers, existing) = cluster_view(admin.clone(), cfg.topic.clone()).await?;
    let settings = TopicSettings::for_cluster(brokers, cfg.replication_factor, cfg.min_insync_replicas)?;
    if let Some(replicas) = existing.filter(|r| *r < settings.replication_factor) {
        tracing::warn!(topic = %cfg.topic, replicas, wanted = settings.replication_factor, "the topic exists with fewer replicas than configured; Kafka keeps them");
    }
    let min_isr = settings.min_insync_replicas.to_string();
    let (main, dlq) = (cfg.topic.clone(), cfg.dlq_topic());
    let topics: Vec<NewTopic<'_>> = [&main, &dlq]
        .into_iter()
        .map(|t| NewTopic::new(t, cfg.partitions, TopicReplication::Fixed(settings.replication_factor)).set("min.insync.replicas", &min_isr))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(10))));
    for result in admin.create_topics(&topics, &opts).await.map_err(unavailable)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(QueueError::Unavailable(format!("cannot create topic {topic}: {code}"))),
        }
    }
    tracing::info!(topic = %cfg.topic, replication_factor = settings.replication_factor, min_insync_replicas = settings.min_insync_replicas, "kafka topics ready");
    Ok(settings)
}

/// How many brokers the cluster has, and how many replicas the topic has if it exists.
async fn cluster_view(admin: Arc<AdminClient<DefaultClientContext>>, topic: String) -> Result<(usize, Option<i32>), QueueError> {
    tokio::task::spawn_blocking(move || {
        let md = admin.inner().fetch_metadata(Some(&topic), Duration::from_secs(10)).map_err(unavailable)?;
        let replicas = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .and_then(|t| t.partitions().first())
            .map(|p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX));
        Ok((md.brokers().len(), replicas))
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
