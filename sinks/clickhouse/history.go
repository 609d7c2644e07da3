package clickhouse

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/engine"
)

// DefaultHistoryChunkRows is HistoryReader.ChunkRows unless set.
const DefaultHistoryChunkRows = 1 << 18

// HistoryReader reads tag records back from the raw table tags, for the
// segment processor's fills from history: one device at a time, each
// device's records in input order. Safe for concurrent use.
//
// It rebuilds each tag.Record as the inverse of what the writers store
// (Writer and HTTPWriter): every field of the record has its column, with
// these limits.
//   - Times (Time, SentAt, ReceivedAt) come back at the precision of the
//     time columns: whole seconds where they are DateTime (ClickHouse
//     before 20.1, such as 18.16), milliseconds where they are
//     DateTime64(3) — truncated toward the past, as the writers store them.
//     A SentAt or ReceivedAt stored as 1970-01-01 00:00:00 (unknown) comes
//     back zero.
//   - Duration is stored in milliseconds as a Float64: exact to the
//     nanosecond up to 2^51 ns (26 days), to a few nanoseconds beyond.
//   - Extras and app-info come back in stored order (sorted by key), dates
//     to the millisecond; an empty list comes back nil, as does Unplanned.
//   - AppID is the query's app; Device is set on device records only,
//     Push on push records only, as Record.Validate requires.
//   - Rows written before schema version 4 have ” in device_app_version,
//     app_build, manufacturer and push_token: their device records come
//     back without those fields.
//
// The columns event_date (the UTC day of event_time) and kafka_partition
// (the query's partition) are only filtered on; kafka_offset becomes
// HistoryRecord.Offset and received_at HistoryRecord.Arrived.
type HistoryReader struct {
	conn driver.Conn
	db   string
	// ChunkRows bounds what one query sorts on the server: when more rows
	// match, Read splits the devices into ranges of about this many rows
	// (a device is never split) and reads one range per query, so that an
	// app's whole history is never sorted at once (18.16 does not sort
	// externally unless told to) and an early return reads at most one
	// range to its end. 0: DefaultHistoryChunkRows.
	ChunkRows int

	mu     sync.Mutex
	layout *timeLayout // of the tags table, read once
}

// NewHistoryReader returns a reader of the tags table of the database db.
func NewHistoryReader(conn driver.Conn, db string) *HistoryReader {
	return &HistoryReader{conn: conn, db: db, ChunkRows: DefaultHistoryChunkRows}
}

// historySelect is what Read selects, in the order of historyRow.dest. The
// ten array columns come as two lengths and three arrays (clickhouse-go
// scans each array through reflection: with ten, that was half of Read's
// CPU); historyRow.record splits them again.
const historySelect = `kind, device_id, user_id, message_id, event_time, sent_at, received_at, app_version,
	session_id, name, activity, job_id, duration_ms,
	length(extra_keys), length(info_keys),
	arrayConcat(extra_keys, extra_strings, info_keys, info_strings, unplanned),
	arrayConcat(extra_types, info_types), arrayConcat(extra_numbers, info_numbers),
	platform, device_app_version, app_build, os_version, model, manufacturer, locale, time_zone, country,
	push_token, push_provider, push_action, delivery_id, campaign_id, kafka_offset`

// historyNeeds are the columns of tags that historySelect reads.
var historyNeeds = []string{"kind", "device_id", "user_id", "message_id", "event_time", "sent_at", "received_at",
	"app_version", "session_id", "name", "activity", "job_id", "duration_ms",
	"extra_keys", "extra_types", "extra_strings", "extra_numbers", "info_keys", "info_types", "info_strings", "info_numbers", "unplanned",
	"platform", "device_app_version", "app_build", "os_version", "model", "manufacturer", "locale", "time_zone", "country",
	"push_token", "push_provider", "push_action", "delivery_id", "campaign_id", "kafka_partition", "kafka_offset"}

// Read calls fn once per device of q.App on the input partition partition
// that has rows matching q (kafka_partition = partition, kafka_offset <
// q.Before, event_time >= q.Since when set — compared at the column's
// precision, so that a record stored truncated is kept —, kind and name as
// q.Kinds and q.Names say), with that device's records in ascending
// kafka_offset order, duplicated rows included (the engine deduplicates).
// Devices come in ascending device id order, one at a time: only one
// device's records are in memory. fn must not keep recs after it returns
// (the records it points to are fn's to keep). An error from fn stops Read,
// which returns it as it is.
//
// ctx is checked between devices: clickhouse-go can panic when a query is
// cancelled while its rows stream (clickhouse-go#1677), so the queries run
// without ctx's cancellation and Read stops itself, reading the current
// range of devices to its end without keeping it.
func (h *HistoryReader) Read(ctx context.Context, partition int, q engine.HistoryQuery, fn func(deviceID string, recs []engine.HistoryRecord) error) error {
	ctx = Long(ctx) // a range streams as long as fn takes
	f, ok, err := h.filter(ctx, partition, &q)
	if err != nil || !ok {
		return err
	}
	bounds, err := h.bounds(ctx, f)
	if err != nil {
		return err
	}
	// Ranges (-∞, b0], (b0, b1], …, (bn, +∞): together they cover every
	// device id, so a device whose rows arrived after bounds is read too.
	for i := 0; i <= len(bounds); i++ {
		r := f
		r.args = append([]any(nil), f.args...)
		if i > 0 {
			r.where += " AND device_id > ?"
			r.args = append(r.args, bounds[i-1])
		}
		if i < len(bounds) {
			r.where += " AND device_id <= ?"
			r.args = append(r.args, bounds[i])
		}
		if err := h.readRange(ctx, r, q.App, fn); err != nil {
			return err
		}
	}
	return nil
}

// Rows returns how many rows Read would visit with the same arguments
// (for progress): one count over the filter's columns.
func (h *HistoryReader) Rows(ctx context.Context, partition int, q engine.HistoryQuery) (int64, error) {
	ctx = Long(ctx)
	f, ok, err := h.filter(ctx, partition, &q)
	if err != nil || !ok {
		return 0, err
	}
	return h.count(ctx, f)
}

func (h *HistoryReader) count(ctx context.Context, f historyFilter) (int64, error) {
	var n uint64
	if err := h.conn.QueryRow(context.WithoutCancel(ctx), "SELECT count() FROM "+h.db+".tags WHERE "+f.where, f.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("clickhouse: count history rows: %w", err)
	}
	return int64(n), ctx.Err()
}

// bounds returns the upper bounds (inclusive) of the device ranges, each
// holding about ChunkRows matching rows; none when all fit in one.
func (h *HistoryReader) bounds(ctx context.Context, f historyFilter) ([]string, error) {
	chunk := h.ChunkRows
	if chunk <= 0 {
		chunk = DefaultHistoryChunkRows
	}
	n, err := h.count(ctx, f)
	if err != nil || n <= int64(chunk) {
		return nil, err
	}
	rows, err := h.conn.Query(context.WithoutCancel(ctx),
		"SELECT device_id, count() FROM "+h.db+".tags WHERE "+f.where+" GROUP BY device_id ORDER BY device_id", f.args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: split history into device ranges: %w", err)
	}
	defer rows.Close()
	var (
		bounds []string
		sum    uint64
		dev    string
		c      uint64
	)
	for rows.Next() {
		if err := rows.Scan(&dev, &c); err != nil {
			return nil, fmt.Errorf("clickhouse: split history into device ranges: %w", err)
		}
		if sum += c; sum >= uint64(chunk) {
			bounds, sum = append(bounds, dev), 0
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: split history into device ranges: %w", err)
	}
	if len(bounds) > 0 && sum == 0 {
		bounds = bounds[:len(bounds)-1] // the last range would be empty
	}
	return bounds, ctx.Err()
}

// readRange reads one range of devices and calls fn per device.
func (h *HistoryReader) readRange(ctx context.Context, f historyFilter, app string, fn func(string, []engine.HistoryRecord) error) error {
	rows, err := h.conn.Query(context.WithoutCancel(ctx),
		"SELECT "+historySelect+" FROM "+h.db+".tags WHERE "+f.where+" ORDER BY device_id, kafka_offset", f.args...)
	if err != nil {
		return fmt.Errorf("clickhouse: read history: %w", err)
	}
	defer rows.Close() // reads what is left, see Read
	var (
		row  historyRow
		dest = row.dest()
		dev  string
		recs []engine.HistoryRecord
	)
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := fn(dev, recs)
		clear(recs)
		recs = recs[:0]
		return err
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("clickhouse: read history: %w", err)
		}
		if row.device != dev {
			if err := flush(); err != nil {
				return err
			}
			dev = row.device
		}
		rec, err := row.record(app)
		if err != nil {
			return fmt.Errorf("clickhouse: history of %s device %q at offset %d: %w", app, row.device, row.offset, err)
		}
		recs = append(recs, engine.HistoryRecord{Record: rec, Offset: int64(row.offset), Arrived: rec.ReceivedAt})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: read history: %w", err)
	}
	return flush()
}

// historyFilter is a WHERE clause with its arguments, bound by
// clickhouse-go, which quotes and escapes every value: no value from the
// query is ever part of the SQL text.
type historyFilter struct {
	where string
	args  []any
}

// filter returns the rows of the tags table that q wants; ok is false when
// q wants none.
func (h *HistoryReader) filter(ctx context.Context, partition int, q *engine.HistoryQuery) (historyFilter, bool, error) {
	if partition < 0 || int64(partition) > math.MaxUint32 {
		return historyFilter{}, false, fmt.Errorf("clickhouse: history of partition %d: no such partition", partition)
	}
	if q.Before <= 0 {
		return historyFilter{}, false, nil
	}
	layout, err := h.timeLayout(ctx)
	if err != nil {
		return historyFilter{}, false, err
	}
	var w strings.Builder
	f := historyFilter{args: []any{q.App, uint32(partition), q.Before}}
	w.WriteString("app = ? AND kafka_partition = ? AND kafka_offset < ?")
	if !q.Since.IsZero() {
		if c, args := layout.since(q.Since); c != "" {
			w.WriteString(" AND " + c)
			f.args = append(f.args, args...)
		}
	}
	if q.Kinds != nil {
		var (
			anyName []string // kinds of any name
			terms   []string
			seen    = map[tag.Kind]bool{}
		)
		for _, k := range q.Kinds {
			if seen[k] {
				continue // Wants reads the first
			}
			seen[k] = true
			names, ok := q.Names[k]
			switch {
			case !ok:
				anyName = append(anyName, k.String())
			case len(names) > 0:
				terms = append(terms, "(kind = ? AND has(?, name))")
				f.args = append(f.args, k.String(), names)
			}
		}
		if len(anyName) > 0 {
			terms = append(terms, "has(?, kind)")
			f.args = append(f.args, anyName)
		}
		if len(terms) == 0 {
			return historyFilter{}, false, nil
		}
		w.WriteString(" AND (" + strings.Join(terms, " OR ") + ")")
	}
	f.where = w.String()
	return f, true, nil
}

// timeLayout is how the tags table stores event times.
type timeLayout struct {
	digits int // fractional digits of event_time: 0 (DateTime) or DateTime64's precision
}

var maxDateTime = time.Unix(math.MaxUint32, 0)

// since returns the condition event_time >= t at the column's precision
// (t truncated to it, as the writers truncate), and event_date >= t's UTC
// day so that older partitions are skipped; "" when every row qualifies.
func (l *timeLayout) since(t time.Time) (string, []any) {
	t = t.UTC()
	epoch := time.Unix(0, 0)
	if t.Before(epoch) && (l.digits == 0 || t.Year() < 1900) {
		return "", nil // before anything the columns can hold
	}
	var c string
	var args []any
	if !t.Before(epoch) {
		c, args = "event_date >= toDate(?) AND ", []any{t.Format(time.DateOnly)}
	}
	if l.digits == 0 {
		if t.After(maxDateTime) {
			t = maxDateTime
		}
		return c + "event_time >= toDateTime(?)", append(args, t.Unix())
	}
	layout := time.DateTime + "." + strings.Repeat("0", l.digits)
	t = t.Truncate(time.Duration(math.Pow10(9 - l.digits)))
	return c + "event_time >= toDateTime64(?, " + strconv.Itoa(l.digits) + ", 'UTC')", append(args, t.Format(layout))
}

// timeLayout reads, once, the type of event_time, and checks that the
// table has every column Read selects.
func (h *HistoryReader) timeLayout(ctx context.Context) (*timeLayout, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.layout != nil {
		return h.layout, nil
	}
	cols, err := columnTypes(ctx, h.conn, h.db, "tags")
	if err != nil {
		return nil, err
	}
	for _, c := range historyNeeds {
		if cols[c] == "" {
			return nil, fmt.Errorf("clickhouse: table %s.tags has no column %s: run engage migrate", h.db, c)
		}
	}
	l := &timeLayout{}
	switch typ := cols["event_time"]; {
	case typ == "DateTime" || strings.HasPrefix(typ, "DateTime("):
	case dateTime64RE.MatchString(typ):
		l.digits, _ = strconv.Atoi(dateTime64RE.FindStringSubmatch(typ)[1])
	default:
		return nil, fmt.Errorf("clickhouse: column %s.tags.event_time is %q, expected DateTime or DateTime64", h.db, typ)
	}
	h.layout = l
	return l, nil
}

// columnTypes returns the columns of a table and their types.
func columnTypes(ctx context.Context, conn driver.Conn, db, table string) (map[string]string, error) {
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = ?", db, table)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read the columns of %s.%s: %w", db, table, err)
	}
	defer rows.Close()
	cols := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("clickhouse: read the columns of %s.%s: %w", db, table, err)
		}
		cols[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: read the columns of %s.%s: %w", db, table, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("clickhouse: database %s has no table %s: run engage migrate", db, table)
	}
	return cols, nil
}
