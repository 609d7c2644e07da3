// Package kafkabus is the Kafka adapter: a bus.Producer on
// github.com/segmentio/kafka-go (acks=all, Murmur2 keys as Java clients
// place them, lz4), topic creation for every topic the platform uses, and a
// topic reader for tools and tests. It sits at the edge: nothing in the core
// imports it.
//
// The log's time is when Kafka received a record, never an event's time: the
// producer stamps the time it sends, and every topic uses log-append time
// (topics.go says why; FixTimestampType changes a topic still on CreateTime).
//
// Every connection the package makes (and those made through Dialer,
// Transport and NewClient) uses the process's security: TLS and SASL as
// Configure set them once at start, before the first client (security.go);
// CheckAuth tries them against the brokers so that a service meets wrong
// credentials at start.
package kafkabus
