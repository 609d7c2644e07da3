// Package sinks moves a Kafka stream into a store: it batches messages by
// count, bytes and time, writes a batch, and commits the batch's offsets only
// after the write succeeded, so nothing is lost and a crash only repeats
// writes (which the store deduplicates on the message id). A store that is
// down is retried with backoff while lag grows; a message that can never be
// written goes to a dead-letter topic with the reason and never blocks its
// partition.
//
// The loop is generic: the tags stream is one Writer (TagWriter), the
// scheduler's decisions another (DecisionWriter: scheduler.DecisionMessage
// as JSON, into the decisions table), the dispatcher's delivery results a
// third (FeedbackWriter: dispatcher.Feedback as JSON, into
// delivery_results); later streams (segment changes) are others. Each stream runs its own Sink with
// its own consumer group. The ClickHouse adapter lives in sinks/clickhouse.
package sinks
