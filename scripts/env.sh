# shellcheck shell=bash
# Source me (do not execute): `. scripts/env.sh`
# Connection settings for the services started by scripts/services.sh.
# Values already set in the environment win.
export KAFKA_TEST_BROKERS="${KAFKA_TEST_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://webhooks:webhooks@127.0.0.1:5432/webhooks}"
# The three-node cluster of `scripts/services.sh up kafka-cluster` (failover tests).
export KAFKA_CLUSTER_TEST_BROKERS="${KAFKA_CLUSTER_TEST_BROKERS:-127.0.0.1:29091,127.0.0.1:29092,127.0.0.1:29093}"
# The CA that signed the test PostgreSQL's certificate (scripts/services.sh), for TLS tests.
export TEST_DATABASE_CA="${TEST_DATABASE_CA:-/etc/postgresql/${PG_VERSION:-15}/${PG_CLUSTER:-main}/webhooks-tls/ca.crt}"
# The broker's SASL_SSL listener (TLS from a local test CA, a SCRAM-SHA-512 user), as managed
# Kafka offers it (scripts/services.sh), for system/tests/kafka_secure.rs.
export KAFKA_SECURE_TEST_BROKERS="${KAFKA_SECURE_TEST_BROKERS:-127.0.0.1:${KAFKA_SECURE_PORT:-9094}}"
export KAFKA_TEST_CA="${KAFKA_TEST_CA:-${SERVICES_HOME:-${HOME:-/root}/.cache/webhooks-services}/kafka/tls/ca.crt}"
export KAFKA_TEST_SASL_USERNAME="${KAFKA_TEST_SASL_USERNAME:-webhooks}"
export KAFKA_TEST_SASL_PASSWORD="${KAFKA_TEST_SASL_PASSWORD:-webhooks-scram}"
