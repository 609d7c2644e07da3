// Package kafkabus is the Kafka adapter: a bus.Producer on
// github.com/segmentio/kafka-go (acks=all, Murmur2 keys as Java clients
// place them, lz4), topic creation for every topic the platform uses, and a
// topic reader for tools and tests. It sits at the edge: nothing in the core
// imports it.
package kafkabus
