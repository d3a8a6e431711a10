const { Kafka, logLevel } = require('kafkajs');

const topic = process.env.SEED_TOPIC || 'seed-payment-webhooks';

const kafka = new Kafka({
  clientId: 'webhook-processing-system',
  brokers: (process.env.KAFKA_BROKERS || '127.0.0.1:9092').split(','),
  logLevel: logLevel.WARN,
});

module.exports = { kafka, topic };
