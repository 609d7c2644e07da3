// Package compose holds what docker-compose.yml needs beside it: the
// read-only ClickHouse user of the analytics API (clickhouse-users.xml),
// the development delivery credentials (delivery/), the Compose
// specification's JSON schema (compose-spec.json, see README.md), and the
// tests: the file is valid against that schema, and every engage service it
// names, started with its command and environment against a real Kafka
// and ClickHouse, becomes healthy. There is no Go API here.
package compose
