// Package analytics answers the analytics API that `engage api` serves:
// JSON over HTTP, read-only, from the ClickHouse tables that
// sinks/clickhouse creates and fills.
//
// Routes (GET, Authorization: Bearer <token>), each under /v1/apps/{app}/:
//
//	active       ?from&to&period=day|week|month  distinct active devices per period
//	new-devices  ?from&to                        devices by the day of their first record
//	sessions     ?from&to                        count, mean and median session length
//	retention    ?from&to&days=30                cohorts by first session_start, D1..Dn
//	funnel       ?from&to&steps=k:n,…&window=s   devices reaching each step (windowFunnel)
//	top          ?from&to&kind&limit             names by distinct records and devices
//	jobs         ?from&to&name                   job durations p50/p90/p99, exact
//	app-info     ?key&limit                      distribution of the latest value of a key
//	coverage     ?from&to                        tag-plan coverage per app version
//
// and the campaign routes, from the scheduler's decisions, the
// dispatcher's delivery results and the raw tags:
//
//	campaigns/{campaign}/devices/{device}/decisions  why the device did or did not get the campaign
//	campaigns/{campaign}/decisions?from&to           decisions per day and outcome
//	campaigns/{campaign}/stats?from&to&goal&within   audience, sends, results, opens, conversions
//	                                                 and lift against the control group, per day and variant
//
// docs/analytics.md is the reference: parameters, answers, errors and the
// exact definitions.
//
// # Exact answers
//
// A record redelivered by Kafka may be stored more than once until the
// ReplacingMergeTree merges it away. Every count here counts distinct
// (device_id, message_id) pairs — the table's own deduplication key — or
// distinct devices; every per-record value (a job's duration) is taken once
// per record (GROUP BY device_id, message_id); sessions and rollups are
// merged with their -Merge functions; app_info is read with argMax; a
// decision is read once, as its copy of the highest Kafka offset (argMax per
// id), and so is a delivery's result (argMax per delivery). So an answer
// does not change when parts merge.
//
// # Safety
//
// Client input reaches SQL only as bound parameters (clickhouse-go quotes
// and escapes them) or after a strict whitelist (kinds, periods) or
// integer parse (limits, days, window). Every query also runs with
// readonly=2 and max_execution_time, so the server itself refuses writes
// (unless Config.ReadonlyUser says the user is read-only already).
// Tokens are compared by their SHA-256 and never logged in full.
package analytics
