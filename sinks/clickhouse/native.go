package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/tag"
)

// HTTPWriter inserts tag records like Writer, but encodes each batch itself
// as one block of ClickHouse's Native format (ch-go's column types, no
// reflection, no per-value allocation) and posts it to the HTTP interface:
// INSERT ... FORMAT Native. The native protocol client spends most of a
// sink's CPU converting rows into columns; this path is the sink's default
// whenever the HTTP address is known. Safe for concurrent use.
type HTTPWriter struct {
	client   *http.Client
	base     string // http://host:port/ or https://host:port/
	db       string
	user     string
	password string
	timeout  time.Duration                // of each insert
	types    map[string]map[string]string // table → column → type, as the server has them
	pool     sync.Pool                    // *nativeBatch
}

// NewHTTPWriter returns a writer into cfg.Database through the HTTP
// interface at httpAddr (host:port, e.g. 127.0.0.1:8123). conn (the native
// protocol) is used once, to read the column types of the tables, so that
// the blocks match whatever version of the schema and server is there.
func NewHTTPWriter(ctx context.Context, conn driver.Conn, cfg Config, httpAddr string) (*HTTPWriter, error) {
	if httpAddr == "" {
		return nil, errors.New("clickhouse: no HTTP address: set -clickhouse.http-addr or ENGAGE_CLICKHOUSE_HTTP_ADDR")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	scheme := "http://"
	if tc != nil {
		scheme = "https://"
	}
	w := &HTTPWriter{
		client: &http.Client{Transport: &http.Transport{
			TLSClientConfig: tc, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute, DisableCompression: true,
			DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: cfg.DialTimeout,
		}},
		base: scheme + httpAddr + "/", db: cfg.Database, user: cfg.User, password: cfg.Password,
		timeout: cfg.InsertTimeout,
		types:   map[string]map[string]string{},
	}
	if err := w.check(ctx, cfg); err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, "SELECT table, name, type FROM system.columns WHERE database = ? AND table IN ('tags', 'devices', 'app_info')", cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read the tables' columns: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, name, typ string
		if err := rows.Scan(&table, &name, &typ); err != nil {
			return nil, fmt.Errorf("clickhouse: read the tables' columns: %w", err)
		}
		if w.types[table] == nil {
			w.types[table] = map[string]string{}
		}
		w.types[table][name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: read the tables' columns: %w", err)
	}
	b, err := w.newBatch() // checks every column's type once
	if err != nil {
		return nil, err
	}
	w.pool.Put(b)
	return w, nil
}

// nativeBatch holds the columns of the three tables for one batch; batches
// are pooled and their columns reset, so that steady state allocates
// nothing per row.
type nativeBatch struct {
	tags, devices, infos nativeTable
	buf                  proto.Buffer
	text                 []byte // scratch for numbers' text form

	// tags
	app, kind, device, user, id, appVersion, session, name, activity, job proto.ColumnOf[string]
	platform, osVersion, model, locale, zone, country, provider           proto.ColumnOf[string]
	deviceVersion, build, maker, token                                    proto.ColumnOf[string]
	action, delivery, campaign                                            proto.ColumnOf[string]
	date, time, sent, received                                            proto.ColumnOf[time.Time]
	duration                                                              *proto.ColFloat64
	xKeys, xStrs, iKeys, iStrs, unplanned                                 *proto.ColArr[string]
	xTypes, iTypes                                                        *proto.ColArr[uint8]
	xNums, iNums                                                          *proto.ColArr[float64]
	partition                                                             *proto.ColUInt32
	offset                                                                *proto.ColUInt64

	// devices
	dApp, dDevice, dUser, dPlatform, dAppVersion, dBuild, dOS, dModel proto.ColumnOf[string]
	dMaker, dLocale, dZone, dCountry, dToken, dProvider               proto.ColumnOf[string]
	dUpdated                                                          proto.ColumnOf[time.Time]

	// app_info
	aApp, aDevice, aUser, aKey, aValue proto.ColumnOf[string]
	aUpdated                           proto.ColumnOf[time.Time]
	aType                              *proto.ColUInt8
	aNumber                            *proto.ColFloat64
}

// nativeTable is one table's insert: its columns in order.
type nativeTable struct {
	name  string
	input proto.Input
}

func (t *nativeTable) rows() int {
	if len(t.input) == 0 {
		return 0
	}
	return t.input[0].Data.Rows()
}

func (t *nativeTable) reset() {
	for _, c := range t.input {
		c.Data.(proto.Resettable).Reset()
	}
}

// columnBuilder makes the columns of one table from the server's types.
type columnBuilder struct {
	table nativeTable
	types map[string]string
	err   error
}

func (b *columnBuilder) fail(name, typ, want string) {
	if b.err == nil {
		b.err = fmt.Errorf("clickhouse: column %s.%s is %q, the sink writes %s: is the schema migrated (engage migrate)?", b.table.name, name, typ, want)
	}
}

func (b *columnBuilder) typ(name string) string {
	t, ok := b.types[name]
	if !ok && b.err == nil {
		b.err = fmt.Errorf("clickhouse: table %s has no column %s: is the schema migrated (engage migrate)?", b.table.name, name)
	}
	return t
}

func (b *columnBuilder) add(name string, c proto.ColInput) {
	b.table.input = append(b.table.input, proto.InputColumn{Name: name, Data: c})
}

func (b *columnBuilder) str(name string) proto.ColumnOf[string] {
	var c proto.ColumnOf[string]
	switch t := b.typ(name); t {
	case "String":
		c = new(proto.ColStr)
	case "LowCardinality(String)":
		c = proto.NewLowCardinality[string](new(proto.ColStr))
	default:
		b.fail(name, t, "String")
		c = new(proto.ColStr)
	}
	b.add(name, c)
	return c
}

var dateTime64RE = regexp.MustCompile(`^DateTime64\((\d)(?:, *'([^']*)')?\)$`)

func (b *columnBuilder) time(name string) proto.ColumnOf[time.Time] {
	var c proto.ColumnOf[time.Time]
	t := b.typ(name)
	switch {
	case t == "Date":
		c = new(proto.ColDate)
	case t == "DateTime":
		c = new(proto.ColDateTime)
	case dateTime64RE.MatchString(t):
		m := dateTime64RE.FindStringSubmatch(t)
		p, _ := strconv.Atoi(m[1])
		c64 := new(proto.ColDateTime64).WithPrecision(proto.Precision(p))
		if m[2] != "" {
			loc, err := time.LoadLocation(m[2])
			if err != nil {
				b.fail(name, t, "a date-time in a known time zone")
			} else {
				c64 = c64.WithLocation(loc)
			}
		}
		c = c64
	default:
		b.fail(name, t, "Date, DateTime or DateTime64")
		c = new(proto.ColDateTime)
	}
	b.add(name, c)
	return c
}

// exact adds a column whose type must be exactly want.
func exact[C proto.ColInput](b *columnBuilder, name, want string, c C) C {
	if t := b.typ(name); t != want && b.err == nil {
		b.fail(name, t, want)
	}
	b.add(name, c)
	return c
}

func (w *HTTPWriter) newBatch() (*nativeBatch, error) {
	n := &nativeBatch{}
	b := &columnBuilder{table: nativeTable{name: "tags"}, types: w.types["tags"]}
	if len(b.types) == 0 {
		return nil, fmt.Errorf("clickhouse: database %s has no table tags: run engage migrate", w.db)
	}
	n.app, n.kind, n.device, n.user, n.id = b.str("app"), b.str("kind"), b.str("device_id"), b.str("user_id"), b.str("message_id")
	n.date, n.time, n.sent, n.received = b.time("event_date"), b.time("event_time"), b.time("sent_at"), b.time("received_at")
	n.appVersion, n.session, n.name, n.activity, n.job = b.str("app_version"), b.str("session_id"), b.str("name"), b.str("activity"), b.str("job_id")
	n.duration = exact(b, "duration_ms", "Float64", new(proto.ColFloat64))
	n.xKeys = exact(b, "extra_keys", "Array(String)", proto.NewArray[string](new(proto.ColStr)))
	n.xTypes = exact(b, "extra_types", "Array(UInt8)", proto.NewArray[uint8](new(proto.ColUInt8)))
	n.xStrs = exact(b, "extra_strings", "Array(String)", proto.NewArray[string](new(proto.ColStr)))
	n.xNums = exact(b, "extra_numbers", "Array(Float64)", proto.NewArray[float64](new(proto.ColFloat64)))
	n.iKeys = exact(b, "info_keys", "Array(String)", proto.NewArray[string](new(proto.ColStr)))
	n.iTypes = exact(b, "info_types", "Array(UInt8)", proto.NewArray[uint8](new(proto.ColUInt8)))
	n.iStrs = exact(b, "info_strings", "Array(String)", proto.NewArray[string](new(proto.ColStr)))
	n.iNums = exact(b, "info_numbers", "Array(Float64)", proto.NewArray[float64](new(proto.ColFloat64)))
	n.platform, n.osVersion, n.model, n.locale = b.str("platform"), b.str("os_version"), b.str("model"), b.str("locale")
	n.zone, n.country, n.provider = b.str("time_zone"), b.str("country"), b.str("push_provider")
	n.deviceVersion, n.build, n.maker, n.token = b.str("device_app_version"), b.str("app_build"), b.str("manufacturer"), b.str("push_token")
	n.action, n.delivery, n.campaign = b.str("push_action"), b.str("delivery_id"), b.str("campaign_id")
	n.unplanned = exact(b, "unplanned", "Array(String)", proto.NewArray[string](new(proto.ColStr)))
	n.partition = exact(b, "kafka_partition", "UInt32", new(proto.ColUInt32))
	n.offset = exact(b, "kafka_offset", "UInt64", new(proto.ColUInt64))
	n.tags = b.table

	d := &columnBuilder{table: nativeTable{name: "devices"}, types: w.types["devices"], err: b.err}
	n.dApp, n.dDevice, n.dUser, n.dUpdated = d.str("app"), d.str("device_id"), d.str("user_id"), d.time("updated_at")
	n.dPlatform, n.dAppVersion, n.dBuild, n.dOS, n.dModel = d.str("platform"), d.str("app_version"), d.str("app_build"), d.str("os_version"), d.str("model")
	n.dMaker, n.dLocale, n.dZone, n.dCountry = d.str("manufacturer"), d.str("locale"), d.str("time_zone"), d.str("country")
	n.dToken, n.dProvider = d.str("push_token"), d.str("push_provider")
	n.devices = d.table

	a := &columnBuilder{table: nativeTable{name: "app_info"}, types: w.types["app_info"], err: d.err}
	n.aApp, n.aDevice, n.aUser, n.aKey, n.aUpdated = a.str("app"), a.str("device_id"), a.str("user_id"), a.str("key"), a.time("updated_at")
	n.aType = exact(a, "type", "UInt8", new(proto.ColUInt8))
	n.aValue = a.str("value")
	n.aNumber = exact(a, "number", "Float64", new(proto.ColFloat64))
	n.infos = a.table
	if a.err != nil {
		return nil, a.err
	}
	return n, nil
}

func (n *nativeBatch) reset() {
	n.tags.reset()
	n.devices.reset()
	n.infos.reset()
}

// appendExtras appends typed key/values to four parallel array columns:
// keys, types, text (each value's text form) and numbers (see number).
func (n *nativeBatch) appendExtras(xs []tag.Extra, keys, strs *proto.ColArr[string], types *proto.ColArr[uint8], nums *proto.ColArr[float64]) {
	for i := range xs {
		x := &xs[i]
		keys.Data.Append(x.Key)
		types.Data.Append(uint8(x.Value.Type))
		if x.Value.Type == tag.TypeString {
			strs.Data.Append(x.Value.Str)
		} else {
			n.text = x.Value.AppendText(n.text[:0])
			strs.Data.(*proto.ColStr).AppendBytes(n.text)
		}
		nums.Data.Append(number(x.Value))
	}
	end := uint64(keys.Data.Rows())
	keys.Offsets = append(keys.Offsets, end)
	types.Offsets = append(types.Offsets, end)
	strs.Offsets = append(strs.Offsets, end)
	nums.Offsets = append(nums.Offsets, end)
}

func (n *nativeBatch) add(r *Row) {
	rec := &r.Rec
	n.app.Append(rec.AppID)
	n.kind.Append(rec.Kind.String())
	n.device.Append(rec.DeviceID)
	n.user.Append(rec.UserID)
	n.id.Append(rec.MessageID)
	n.date.Append(rec.Time.UTC()) // the UTC day
	n.time.Append(rec.Time)
	n.sent.Append(orEpoch(rec.SentAt))
	n.received.Append(orEpoch(rec.ReceivedAt))
	n.appVersion.Append(rec.AppVersion)
	n.session.Append(rec.SessionID)
	n.name.Append(rec.Name)
	n.activity.Append(rec.Activity)
	n.job.Append(rec.JobID)
	n.duration.Append(float64(rec.Duration) / float64(time.Millisecond))
	n.appendExtras(rec.Extras, n.xKeys, n.xStrs, n.xTypes, n.xNums)
	n.appendExtras(rec.AppInfo, n.iKeys, n.iStrs, n.iTypes, n.iNums)
	var d tag.DeviceInfo
	if rec.Device != nil {
		d = *rec.Device
	}
	n.platform.Append(d.Platform)
	n.osVersion.Append(d.OSVersion)
	n.model.Append(d.Model)
	n.locale.Append(d.Locale)
	n.zone.Append(d.TimeZone)
	n.country.Append(d.Country)
	n.provider.Append(string(d.PushProvider))
	n.deviceVersion.Append(d.AppVersion)
	n.build.Append(d.AppBuild)
	n.maker.Append(d.Manufacturer)
	n.token.Append(d.PushToken)
	var p tag.Push
	if rec.Push != nil {
		p = *rec.Push
	}
	n.action.Append(string(p.Action))
	n.delivery.Append(p.DeliveryID)
	n.campaign.Append(p.CampaignID)
	n.unplanned.Append(rec.Unplanned)
	n.partition.Append(uint32(r.Partition))
	n.offset.Append(uint64(r.Offset))

	switch {
	case rec.Device != nil:
		n.dApp.Append(rec.AppID)
		n.dDevice.Append(rec.DeviceID)
		n.dUser.Append(rec.UserID)
		n.dUpdated.Append(rec.Time)
		n.dPlatform.Append(d.Platform)
		n.dAppVersion.Append(d.AppVersion)
		n.dBuild.Append(d.AppBuild)
		n.dOS.Append(d.OSVersion)
		n.dModel.Append(d.Model)
		n.dMaker.Append(d.Manufacturer)
		n.dLocale.Append(d.Locale)
		n.dZone.Append(d.TimeZone)
		n.dCountry.Append(d.Country)
		n.dToken.Append(d.PushToken)
		n.dProvider.Append(string(d.PushProvider))
	case rec.Kind == tag.KindAppInfo:
		for i := range rec.AppInfo {
			x := &rec.AppInfo[i]
			n.aApp.Append(rec.AppID)
			n.aDevice.Append(rec.DeviceID)
			n.aUser.Append(rec.UserID)
			n.aKey.Append(x.Key)
			n.aUpdated.Append(rec.Time)
			n.aType.Append(uint8(x.Value.Type))
			n.text = x.Value.AppendText(n.text[:0])
			n.aValue.Append(string(n.text))
			n.aNumber.Append(number(x.Value))
		}
	}
}

// Write inserts the rows: tags, then devices and app_info. It returns an
// error if any insert failed; the caller retries the whole batch (rows
// already inserted collapse on their keys).
func (w *HTTPWriter) Write(ctx context.Context, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	n, _ := w.pool.Get().(*nativeBatch)
	if n == nil {
		var err error
		if n, err = w.newBatch(); err != nil {
			return err
		}
	}
	defer func() {
		n.reset()
		w.pool.Put(n)
	}()
	for i := range rows {
		n.add(&rows[i])
	}
	for _, t := range []*nativeTable{&n.tags, &n.devices, &n.infos} {
		if err := w.insert(ctx, t, &n.buf); err != nil {
			return err
		}
	}
	return nil
}

// insert posts one table's block.
func (w *HTTPWriter) insert(ctx context.Context, t *nativeTable, buf *proto.Buffer) error {
	rows := t.rows()
	if rows == 0 {
		return nil
	}
	buf.Reset()
	if err := (proto.Block{Columns: len(t.input), Rows: rows}).EncodeRawBlock(buf, 0, t.input); err != nil {
		return fmt.Errorf("insert into %s: encode: %w", t.name, err)
	}
	names := make([]string, len(t.input))
	for i, c := range t.input {
		names[i] = c.Name
	}
	q := url.Values{"query": {"INSERT INTO " + w.db + "." + t.name + " (" + strings.Join(names, ", ") + ") FORMAT Native"}}
	ictx, cancel := deadline(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ictx, http.MethodPost, w.base+"?"+q.Encode(), bytes.NewReader(buf.Buf))
	if err != nil {
		return fmt.Errorf("insert into %s: %w", t.name, err)
	}
	req.SetBasicAuth(w.user, w.password)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := w.client.Do(req)
	if err != nil {
		if ownDeadline(ctx, ictx) {
			err = &TimeoutError{Op: "insert", After: w.timeout, Err: err}
		}
		return fmt.Errorf("insert into %s: %w", t.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return fmt.Errorf("insert into %s: %w", t.name, httpException(resp, body))
}

var exceptionCodeRE = regexp.MustCompile(`^Code: (\d+)`)

// httpException turns an HTTP error answer into the *clickhouse.Exception
// the native protocol would have returned, so that IsPermanent classifies
// both alike. The code is in a header on newer servers and at the start of
// the body on all; an answer with no code (a proxy's, say) is transient.
func httpException(resp *http.Response, body []byte) error {
	msg := strings.TrimSpace(string(body))
	code := resp.Header.Get("X-ClickHouse-Exception-Code")
	if code == "" {
		if m := exceptionCodeRE.FindStringSubmatch(msg); m != nil {
			code = m[1]
		}
	}
	c, err := strconv.ParseInt(code, 10, 32)
	if err != nil {
		return &HTTPStatusError{Status: resp.StatusCode, Body: msg}
	}
	return &clickhouse.Exception{Code: int32(c), Message: msg}
}

// check asks the server once, at start, a query of nothing: wrong credentials
// (or a plain HTTP port behind an https address, or a certificate that does
// not verify) fail here with a clear error rather than in the sink's retry
// loop.
func (w *HTTPWriter) check(ctx context.Context, cfg Config) error {
	cctx, cancel := deadline(ctx, cfg.DialTimeout+cfg.QueryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, w.base+"?"+url.Values{"query": {"SELECT 1"}}.Encode(), nil)
	if err != nil {
		return fmt.Errorf("clickhouse HTTP at %s: %w", w.base, err)
	}
	req.SetBasicAuth(w.user, w.password)
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("clickhouse HTTP at %s: %w", w.base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	err = httpException(resp, body)
	if IsAuth(err) {
		return &AuthError{Addr: strings.TrimSuffix(w.base, "/"), User: w.user, Err: err}
	}
	return fmt.Errorf("clickhouse HTTP at %s: %w", w.base, err)
}
