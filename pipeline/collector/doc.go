// Package collector is the HTTP edge where apps send their tag data: the
// native API (POST /v1/tags) and Segment's HTTP Tracking API. It checks the
// write key, decodes and validates every record on its own, applies the
// app's tag plan, and answers 2xx only after the log (Kafka, acks=all) has
// acknowledged every record it accepted. Bad records are refused one by one
// with their index, field and reason; good records in the same request are
// kept.
package collector
