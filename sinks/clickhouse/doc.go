// Package clickhouse is the ClickHouse adapter: the versioned schema and its
// migrations (working on the 18.16 server the tests run against and on the
// 24.x+ servers users run, with newer column types where the server has
// them), the writers that the sink uses to insert tag records, the
// scheduler's decisions (Writer.WriteDecisions) and the dispatcher's
// delivery results (Writer.WriteResults), the history reader through
// which the segment processor fills new segments from the raw tags
// (HistoryReader, the inverse of the writers), and the connection settings
// shared by the sink, the processor and the analytics API.
//
// Exactly-once results rest on three things: every row carries the record's
// message id; the raw table is a ReplacingMergeTree keyed on it, so a
// redelivered batch collapses when parts merge; and every query that counts
// rows counts distinct message ids (uniqExact), so an answer is exact even
// before the merge. The decisions table does the same on the decision's id,
// with the Kafka offset as its version: queries read each id's copy of the
// highest offset (argMax), the one a merge keeps; so does delivery_results,
// on the delivery and the result's id.
package clickhouse
