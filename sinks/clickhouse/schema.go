package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Migration is one version of the schema: statements that take the previous
// version to this one. Statements are idempotent (IF NOT EXISTS), so a
// migration interrupted half-way can run again.
type Migration struct {
	Version     uint32
	Description string
	Statements  []string // text/template over schemaVars
}

type schemaVars struct {
	DB   string
	LC   string // LowCardinality(String) where the server has it, else String
	Time string // DateTime64(3, 'UTC') where the server has it, else DateTime
	TTL  string // a TTL clause, or empty

	cols map[string]map[string]bool // table → column, as the server has them now
}

// Has reports whether the table already has the column: a statement that
// adds a column renders to nothing when it has (18.16 has no ADD COLUMN IF
// NOT EXISTS), so that the migration can run again.
func (v schemaVars) Has(table, column string) bool { return v.cols[table][column] }

// Migrations is the schema history, oldest first. Append; never edit a
// released migration.
var Migrations = []Migration{
	{1, "raw tag records, latest device info and app-info, sessions", []string{
		`CREATE DATABASE IF NOT EXISTS {{.DB}}`,
		// One row per tag record. ReplacingMergeTree on the message id:
		// a redelivered record collapses when parts merge; queries count
		// uniqExact(message_id) so that answers are exact before that.
		`CREATE TABLE IF NOT EXISTS {{.DB}}.tags (
			app {{.LC}},
			kind {{.LC}},
			device_id String,
			user_id String,
			message_id String,
			event_date Date,
			event_time {{.Time}},
			sent_at {{.Time}},
			received_at {{.Time}},
			app_version {{.LC}},
			session_id String,
			name String,
			activity String,
			job_id String,
			duration_ms Float64,
			extra_keys Array(String),
			extra_types Array(UInt8),
			extra_strings Array(String),
			extra_numbers Array(Float64),
			info_keys Array(String),
			info_types Array(UInt8),
			info_strings Array(String),
			info_numbers Array(Float64),
			platform {{.LC}},
			os_version String,
			model String,
			locale String,
			time_zone String,
			country String,
			push_provider String,
			push_action String,
			delivery_id String,
			campaign_id String,
			unplanned Array(String),
			kafka_partition UInt32,
			kafka_offset UInt64
		) ENGINE = ReplacingMergeTree()
		PARTITION BY toYYYYMM(event_date)
		ORDER BY (app, device_id, message_id){{.TTL}}`,
		// The latest device info of each device: the row with the newest
		// event time wins (FINAL or argMax when reading).
		`CREATE TABLE IF NOT EXISTS {{.DB}}.devices (
			app {{.LC}},
			device_id String,
			user_id String,
			updated_at {{.Time}},
			platform {{.LC}},
			app_version {{.LC}},
			app_build String,
			os_version String,
			model String,
			manufacturer String,
			locale String,
			time_zone String,
			country String,
			push_token String,
			push_provider String
		) ENGINE = ReplacingMergeTree(updated_at)
		ORDER BY (app, device_id)`,
		// The latest value of each app-info key of each device.
		`CREATE TABLE IF NOT EXISTS {{.DB}}.app_info (
			app {{.LC}},
			device_id String,
			user_id String,
			key String,
			updated_at {{.Time}},
			type UInt8,
			value String,
			number Float64
		) ENGINE = ReplacingMergeTree(updated_at)
		ORDER BY (app, key, device_id)`,
		// Sessions, folded from session_start and session_end records
		// (min and max are idempotent: duplicates change nothing).
		`CREATE TABLE IF NOT EXISTS {{.DB}}.sessions (
			app {{.LC}},
			device_id String,
			session_id String,
			started AggregateFunction(min, {{.Time}}),
			ended AggregateFunction(max, {{.Time}}),
			duration_ms AggregateFunction(max, Float64),
			has_start AggregateFunction(max, UInt8),
			has_end AggregateFunction(max, UInt8)
		) ENGINE = AggregatingMergeTree()
		ORDER BY (app, device_id, session_id)`,
		`CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.sessions_mv TO {{.DB}}.sessions AS
		SELECT app, device_id, session_id,
			minState(event_time) AS started,
			maxState(event_time) AS ended,
			maxState(duration_ms) AS duration_ms,
			maxState(toUInt8(kind = 'session_start')) AS has_start,
			maxState(toUInt8(kind = 'session_end')) AS has_end
		FROM {{.DB}}.tags
		WHERE kind IN ('session_start', 'session_end') AND session_id != ''
		GROUP BY app, device_id, session_id`,
	}},
	{2, "rollups: hourly and daily active devices, daily counts by tag, job durations", []string{
		`CREATE TABLE IF NOT EXISTS {{.DB}}.active_hourly (
			app {{.LC}},
			hour DateTime,
			devices AggregateFunction(uniqExact, String)
		) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(hour) ORDER BY (app, hour)`,
		`CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.active_hourly_mv TO {{.DB}}.active_hourly AS
		SELECT app, toStartOfHour(event_time) AS hour, uniqExactState(device_id) AS devices
		FROM {{.DB}}.tags GROUP BY app, hour`,
		`CREATE TABLE IF NOT EXISTS {{.DB}}.active_daily (
			app {{.LC}},
			day Date,
			devices AggregateFunction(uniqExact, String)
		) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (app, day)`,
		`CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.active_daily_mv TO {{.DB}}.active_daily AS
		SELECT app, event_date AS day, uniqExactState(device_id) AS devices
		FROM {{.DB}}.tags GROUP BY app, day`,
		// Counts of records by kind and name (events, activities, jobs,
		// errors, crashes), as distinct message ids: duplicates do not count.
		`CREATE TABLE IF NOT EXISTS {{.DB}}.counts_daily (
			app {{.LC}},
			day Date,
			kind {{.LC}},
			name String,
			records AggregateFunction(uniqExact, String),
			devices AggregateFunction(uniqExact, String)
		) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (app, day, kind, name)`,
		`CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.counts_daily_mv TO {{.DB}}.counts_daily AS
		SELECT app, event_date AS day, kind, name, uniqExactState(message_id) AS records, uniqExactState(device_id) AS devices
		FROM {{.DB}}.tags WHERE name != '' GROUP BY app, day, kind, name`,
		// Job durations for dashboards (quantile sketches; the API's exact
		// percentiles read the raw table).
		`CREATE TABLE IF NOT EXISTS {{.DB}}.job_durations_daily (
			app {{.LC}},
			day Date,
			name String,
			durations AggregateFunction(quantiles(0.5, 0.9, 0.99), Float64)
		) ENGINE = AggregatingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (app, day, name)`,
		`CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.job_durations_daily_mv TO {{.DB}}.job_durations_daily AS
		SELECT app, event_date AS day, name, quantilesState(0.5, 0.9, 0.99)(duration_ms) AS durations
		FROM {{.DB}}.tags WHERE kind IN ('job', 'job_end') GROUP BY app, day, name`,
	}},
	{3, "funnel events: a narrow copy of named records for windowFunnel", []string{
		// Funnels read only who did which tag when: numbers instead of
		// strings, sorted so that a step filter reads few granules. A
		// record stored twice changes no funnel.
		`CREATE TABLE IF NOT EXISTS {{.DB}}.funnel_events (
			app {{.LC}},
			event_date Date,
			tag UInt64,
			device_key UInt64,
			ts DateTime
		) ENGINE = MergeTree() PARTITION BY toYYYYMM(event_date) ORDER BY (app, event_date, tag, device_key)`,
		`CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.funnel_events_mv TO {{.DB}}.funnel_events AS
		SELECT app, event_date, cityHash64(kind, name) AS tag, cityHash64(device_id) AS device_key, toDateTime(event_time) AS ts
		FROM {{.DB}}.tags WHERE name != ''`,
		// Records stored before this migration (after the view exists, so
		// none is missed; one stored in between is copied twice, which no
		// funnel notices).
		`INSERT INTO {{.DB}}.funnel_events (app, event_date, tag, device_key, ts)
		SELECT app, event_date, cityHash64(kind, name), cityHash64(device_id), toDateTime(event_time)
		FROM {{.DB}}.tags WHERE name != ''`,
	}},
	{4, "tags keep every device field: device_app_version, app_build, manufacturer, push_token", []string{
		// The raw table held only some of a device record's fields; the
		// segment language reads manufacturer and the device's app version
		// too, and a fill from history rebuilds records from this table.
		// Rows written before this migration have '' in these columns.
		`{{if not (.Has "tags" "device_app_version")}}ALTER TABLE {{.DB}}.tags ADD COLUMN device_app_version {{.LC}} AFTER platform{{end}}`,
		`{{if not (.Has "tags" "app_build")}}ALTER TABLE {{.DB}}.tags ADD COLUMN app_build String AFTER device_app_version{{end}}`,
		`{{if not (.Has "tags" "manufacturer")}}ALTER TABLE {{.DB}}.tags ADD COLUMN manufacturer String AFTER model{{end}}`,
		`{{if not (.Has "tags" "push_token")}}ALTER TABLE {{.DB}}.tags ADD COLUMN push_token String AFTER country{{end}}`,
	}},
	{5, "the scheduler's decisions (engage.decisions), for \"why didn't device X get campaign Y\"", []string{
		// One row per decision message (scheduler.DecisionMessage). The
		// sorting key starts with (app, campaign, device_id), so that one
		// device's decisions for a campaign are a few granules, and ends
		// with the decision's id, so that copies of a decision (Kafka
		// redelivered it, or the scheduler decided it again after a
		// restart) collapse when parts merge. The version is the Kafka
		// offset: the copy produced last is kept, and queries take
		// argMax(…, kafka_offset) per id to see the same row before the
		// merge. send_at is 1970-01-01 when the decision has none; day is
		// the UTC day of time. inserted_at is when the sink wrote the row.
		`CREATE TABLE IF NOT EXISTS {{.DB}}.decisions (
			app {{.LC}},
			campaign {{.LC}},
			device_id String,
			id String,
			version Int64,
			occurrence String,
			outcome {{.LC}},
			reason String,
			day Date,
			time {{.Time}},
			send_at {{.Time}},
			variant {{.LC}},
			kafka_partition UInt32,
			kafka_offset UInt64,
			inserted_at DateTime DEFAULT now()
		) ENGINE = ReplacingMergeTree(kafka_offset)
		PARTITION BY toYYYYMM(day)
		ORDER BY (app, campaign, device_id, id)`,
	}},
	{6, "delivery results (engage.feedback), for the campaign statistics", []string{
		// One row per result message of the dispatcher
		// (dispatcher.Feedback): what happened to a delivery at the
		// provider. Sorted by (app, campaign, device_id), so that a
		// campaign's results are one range of the key, then delivery_id
		// and the result's id, so that copies of a result (Kafka
		// redelivered it, or the dispatcher wrote it again after a
		// restart) collapse when parts merge. The version is the Kafka
		// offset, as in decisions: queries take argMax(…, kafka_offset)
		// per delivery to see before the merge what the merge keeps. day
		// is the UTC day of time; inserted_at is when the sink wrote the
		// row.
		`CREATE TABLE IF NOT EXISTS {{.DB}}.delivery_results (
			app {{.LC}},
			campaign {{.LC}},
			device_id String,
			delivery_id String,
			id String,
			version Int64,
			variant {{.LC}},
			channel {{.LC}},
			provider {{.LC}},
			outcome {{.LC}},
			reason String,
			provider_id String,
			attempts UInt32,
			day Date,
			time {{.Time}},
			kafka_partition UInt32,
			kafka_offset UInt64,
			inserted_at DateTime DEFAULT now()
		) ENGINE = ReplacingMergeTree(kafka_offset)
		PARTITION BY toYYYYMM(day)
		ORDER BY (app, campaign, device_id, delivery_id, id)`,
	}},
}

// RollupViews are the materialized views that every insert into tags feeds.
var RollupViews = []string{"sessions_mv", "active_hourly_mv", "active_daily_mv", "counts_daily_mv", "job_durations_daily_mv", "funnel_events_mv"}

// Migrate brings the schema to the newest version and returns the versions
// it applied. It records each applied version in schema_migrations.
func Migrate(ctx context.Context, conn driver.Conn, cfg Config, f Features) ([]uint32, error) {
	ctx = Long(ctx) // a backfill (INSERT … SELECT) takes as long as the table is big
	vars := schemaVars{DB: cfg.Database, LC: "String", Time: "DateTime"}
	if f.LowCardinality {
		vars.LC = "LowCardinality(String)"
	}
	if f.DateTime64 {
		vars.Time = "DateTime64(3, 'UTC')"
	}
	if f.TTL && cfg.TTLDays > 0 {
		vars.TTL = fmt.Sprintf("\n\t\tTTL event_date + INTERVAL %d DAY", cfg.TTLDays)
	}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+cfg.Database); err != nil {
		return nil, fmt.Errorf("create database %s: %w", cfg.Database, err)
	}
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+cfg.Database+`.schema_migrations (
		version UInt32, description String, applied_at DateTime
	) ENGINE = ReplacingMergeTree() ORDER BY version`); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	done, err := appliedVersions(ctx, conn, cfg.Database)
	if err != nil {
		return nil, err
	}
	var applied []uint32
	for _, m := range Migrations {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if strings.Contains(stmt, ".Has") {
				if vars.cols, err = tableColumns(ctx, conn, cfg.Database); err != nil {
					return applied, fmt.Errorf("migration %d: %w", m.Version, err)
				}
			}
			sql, err := render(stmt, vars)
			if err != nil {
				return applied, fmt.Errorf("migration %d statement %d: %w", m.Version, i+1, err)
			}
			if strings.TrimSpace(sql) == "" {
				continue // nothing left to do
			}
			if err := conn.Exec(ctx, sql); err != nil {
				return applied, fmt.Errorf("migration %d (%s) statement %d: %w", m.Version, m.Description, i+1, err)
			}
		}
		if err := recordMigration(ctx, conn, cfg.Database, m); err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

func recordMigration(ctx context.Context, conn driver.Conn, db string, m Migration) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".schema_migrations (version, description, applied_at)")
	if err != nil {
		return err
	}
	if err := b.Append(m.Version, m.Description, time.Now().UTC()); err != nil {
		return err
	}
	return b.Send()
}

// SchemaVersion returns the newest applied migration (0: none).
func SchemaVersion(ctx context.Context, conn driver.Conn, db string) (uint32, error) {
	done, err := appliedVersions(ctx, conn, db)
	var v uint32
	for k := range done {
		v = max(v, k)
	}
	return v, err
}

func appliedVersions(ctx context.Context, conn driver.Conn, db string) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM "+db+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	done := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		done[v] = true
	}
	return done, rows.Err()
}

// tableColumns returns the columns of every table of the database.
func tableColumns(ctx context.Context, conn driver.Conn, db string) (map[string]map[string]bool, error) {
	rows, err := conn.Query(ctx, "SELECT table, name FROM system.columns WHERE database = ?", db)
	if err != nil {
		return nil, fmt.Errorf("read the tables' columns: %w", err)
	}
	defer rows.Close()
	cols := map[string]map[string]bool{}
	for rows.Next() {
		var table, name string
		if err := rows.Scan(&table, &name); err != nil {
			return nil, fmt.Errorf("read the tables' columns: %w", err)
		}
		if cols[table] == nil {
			cols[table] = map[string]bool{}
		}
		cols[table][name] = true
	}
	return cols, rows.Err()
}

func render(stmt string, vars schemaVars) (string, error) {
	t, err := template.New("").Parse(stmt)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, vars); err != nil {
		return "", err
	}
	return b.String(), nil
}
