package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/tag"
)

// Row is a tag record and where it came from in Kafka.
type Row struct {
	Rec       tag.Record
	Partition int32
	Offset    int64
}

// RowWriter stores tag records: Writer and HTTPWriter.
type RowWriter interface {
	Write(ctx context.Context, rows []Row) error
}

// Writer inserts tag records: every record into tags, device records into
// devices too, app-info records into app_info (one row per key). Inserts
// are columnar. Safe for concurrent use.
type Writer struct {
	conn driver.Conn
	db   string
}

// NewWriter returns a writer into the database db.
func NewWriter(conn driver.Conn, db string) *Writer { return &Writer{conn: conn, db: db} }

const tagColumns = `app, kind, device_id, user_id, message_id, event_date, event_time, sent_at, received_at, app_version,
	session_id, name, activity, job_id, duration_ms, extra_keys, extra_types, extra_strings, extra_numbers,
	info_keys, info_types, info_strings, info_numbers, platform, device_app_version, app_build, os_version, model,
	manufacturer, locale, time_zone, country, push_token, push_provider, push_action, delivery_id, campaign_id, unplanned,
	kafka_partition, kafka_offset`

// tagCols holds the columns of a tags insert.
type tagCols struct {
	app, kind, device, user, id                                 []string
	date, time, sent, received                                  []time.Time
	appVersion, session, name, activity, job                    []string
	duration                                                    []float64
	xKeys, xStrs, iKeys, iStrs                                  [][]string
	xTypes, iTypes                                              [][]uint8
	xNums, iNums                                                [][]float64
	platform, osVersion, model, locale, zone, country, provider []string
	deviceVersion, build, maker, token                          []string
	action, delivery, campaign                                  []string
	unplanned                                                   [][]string
	partition                                                   []uint32
	offset                                                      []uint64
}

func newTagCols(n int) *tagCols {
	str := func() []string { return make([]string, 0, n) }
	tm := func() []time.Time { return make([]time.Time, 0, n) }
	strs := func() [][]string { return make([][]string, 0, n) }
	return &tagCols{
		app: str(), kind: str(), device: str(), user: str(), id: str(),
		date: tm(), time: tm(), sent: tm(), received: tm(),
		appVersion: str(), session: str(), name: str(), activity: str(), job: str(),
		duration: make([]float64, 0, n),
		xKeys:    strs(), xStrs: strs(), iKeys: strs(), iStrs: strs(),
		xTypes: make([][]uint8, 0, n), iTypes: make([][]uint8, 0, n),
		xNums: make([][]float64, 0, n), iNums: make([][]float64, 0, n),
		platform: str(), osVersion: str(), model: str(), locale: str(), zone: str(), country: str(), provider: str(),
		deviceVersion: str(), build: str(), maker: str(), token: str(),
		action: str(), delivery: str(), campaign: str(), unplanned: strs(),
		partition: make([]uint32, 0, n), offset: make([]uint64, 0, n),
	}
}

func (c *tagCols) add(r *Row) {
	rec := &r.Rec
	c.app = append(c.app, rec.AppID)
	c.kind = append(c.kind, rec.Kind.String())
	c.device = append(c.device, rec.DeviceID)
	c.user = append(c.user, rec.UserID)
	c.id = append(c.id, rec.MessageID)
	t := rec.Time.UTC()
	c.date = append(c.date, time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC))
	c.time = append(c.time, t)
	c.sent = append(c.sent, orEpoch(rec.SentAt))
	c.received = append(c.received, orEpoch(rec.ReceivedAt))
	c.appVersion = append(c.appVersion, rec.AppVersion)
	c.session = append(c.session, rec.SessionID)
	c.name = append(c.name, rec.Name)
	c.activity = append(c.activity, rec.Activity)
	c.job = append(c.job, rec.JobID)
	c.duration = append(c.duration, float64(rec.Duration)/float64(time.Millisecond))
	k, ty, s, n := split(rec.Extras)
	c.xKeys, c.xTypes, c.xStrs, c.xNums = append(c.xKeys, k), append(c.xTypes, ty), append(c.xStrs, s), append(c.xNums, n)
	k, ty, s, n = split(rec.AppInfo)
	c.iKeys, c.iTypes, c.iStrs, c.iNums = append(c.iKeys, k), append(c.iTypes, ty), append(c.iStrs, s), append(c.iNums, n)
	var d tag.DeviceInfo
	if rec.Device != nil {
		d = *rec.Device
	}
	c.platform = append(c.platform, d.Platform)
	c.deviceVersion = append(c.deviceVersion, d.AppVersion)
	c.build = append(c.build, d.AppBuild)
	c.osVersion = append(c.osVersion, d.OSVersion)
	c.model = append(c.model, d.Model)
	c.maker = append(c.maker, d.Manufacturer)
	c.locale = append(c.locale, d.Locale)
	c.zone = append(c.zone, d.TimeZone)
	c.country = append(c.country, d.Country)
	c.token = append(c.token, d.PushToken)
	c.provider = append(c.provider, string(d.PushProvider))
	var p tag.Push
	if rec.Push != nil {
		p = *rec.Push
	}
	c.action = append(c.action, string(p.Action))
	c.delivery = append(c.delivery, p.DeliveryID)
	c.campaign = append(c.campaign, p.CampaignID)
	un := rec.Unplanned
	if un == nil {
		un = noStrings
	}
	c.unplanned = append(c.unplanned, un)
	c.partition = append(c.partition, uint32(r.Partition))
	c.offset = append(c.offset, uint64(r.Offset))
}

func (c *tagCols) columns() []any {
	return []any{c.app, c.kind, c.device, c.user, c.id, c.date, c.time, c.sent, c.received, c.appVersion,
		c.session, c.name, c.activity, c.job, c.duration, c.xKeys, c.xTypes, c.xStrs, c.xNums,
		c.iKeys, c.iTypes, c.iStrs, c.iNums, c.platform, c.deviceVersion, c.build, c.osVersion, c.model,
		c.maker, c.locale, c.zone, c.country, c.token, c.provider, c.action, c.delivery, c.campaign, c.unplanned,
		c.partition, c.offset}
}

// Shared empty arrays: most records have no app-info and no marks.
var (
	noStrings = []string{}
	noTypes   = []uint8{}
	noNumbers = []float64{}
)

// epoch stands for "unknown" in time columns, which cannot hold NULL here.
var epoch = time.Unix(0, 0).UTC()

func orEpoch(t time.Time) time.Time {
	if t.IsZero() {
		return epoch
	}
	return t.UTC()
}

// split turns typed extras into parallel arrays: keys, types, text (every
// value's text form) and numbers (the number, 1/0 for bools, Unix seconds
// for dates, 0 for strings).
func split(xs []tag.Extra) (keys []string, types []uint8, strs []string, nums []float64) {
	if len(xs) == 0 {
		return noStrings, noTypes, noStrings, noNumbers
	}
	keys, types, strs, nums = make([]string, len(xs)), make([]uint8, len(xs)), make([]string, len(xs)), make([]float64, len(xs))
	for i, x := range xs {
		keys[i], types[i], strs[i], nums[i] = x.Key, uint8(x.Value.Type), x.Value.Text(), number(x.Value)
	}
	return
}

func number(v tag.Value) float64 {
	switch v.Type {
	case tag.TypeNumber:
		return v.Num
	case tag.TypeBool:
		if v.Bool {
			return 1
		}
	case tag.TypeDate:
		return float64(v.Date.UnixMilli()) / 1000
	}
	return 0
}

// Write inserts the rows. It returns an error if any insert failed; the
// caller retries the whole batch (rows already inserted collapse on their
// message id).
func (w *Writer) Write(ctx context.Context, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	tags := newTagCols(len(rows))
	var devices, infos [][]any
	for i := range rows {
		tags.add(&rows[i])
		rec := &rows[i].Rec
		switch {
		case rec.Device != nil:
			d := rec.Device
			devices = append(devices, []any{rec.AppID, rec.DeviceID, rec.UserID, rec.Time.UTC(), d.Platform, d.AppVersion, d.AppBuild,
				d.OSVersion, d.Model, d.Manufacturer, d.Locale, d.TimeZone, d.Country, d.PushToken, string(d.PushProvider)})
		case rec.Kind == tag.KindAppInfo:
			for _, x := range rec.AppInfo {
				infos = append(infos, []any{rec.AppID, rec.DeviceID, rec.UserID, x.Key, rec.Time.UTC(), uint8(x.Value.Type), x.Value.Text(), number(x.Value)})
			}
		}
	}
	if err := w.insertColumns(ctx, "tags", tagColumns, tags.columns()); err != nil {
		return err
	}
	if err := w.insertRows(ctx, "devices", `app, device_id, user_id, updated_at, platform, app_version, app_build, os_version, model,
		manufacturer, locale, time_zone, country, push_token, push_provider`, devices); err != nil {
		return err
	}
	return w.insertRows(ctx, "app_info", "app, device_id, user_id, key, updated_at, type, value, number", infos)
}

func (w *Writer) insertColumns(ctx context.Context, table, columns string, cols []any) error {
	b, err := w.conn.PrepareBatch(ctx, "INSERT INTO "+w.db+"."+table+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	for i, col := range cols {
		if err := b.Column(i).Append(col); err != nil {
			_ = b.Abort()
			return fmt.Errorf("insert into %s, column %d: %w", table, i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

func (w *Writer) insertRows(ctx context.Context, table, columns string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := w.conn.PrepareBatch(ctx, "INSERT INTO "+w.db+"."+table+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	for _, r := range rows {
		if err := b.Append(r...); err != nil {
			_ = b.Abort()
			return fmt.Errorf("insert into %s: %w", table, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}
