// Package tag is the tag model: the records that apps stream to OpenEngage
// (sessions, activities, events, jobs, errors, crashes, app-info, device info
// and push feedback), their validation rules and limits, the correction of
// client clock skew, the native JSON form that the collector accepts, and the
// compact versioned binary form that travels through Kafka.
//
// It is part of the pure core: it imports only the standard library, so the
// segment engine, the triggers and the tests use it without Kafka, ClickHouse
// or HTTP.
package tag
