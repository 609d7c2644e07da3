package analytics

import (
	"context"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/tag"
)

// kindIn returns "kind IN ('a', 'b')" for a whitelisted step kind: the
// literals come from stepKinds, never from the request.
func kindIn(kind string) string {
	return "kind IN ('" + strings.Join(stepKinds[kind], "', '") + "')"
}

// FunnelStep is a step of /funnel and the devices that reached it.
type FunnelStep struct {
	Step
	Devices uint64 `json:"devices"`
}

// Funnel is the answer of /funnel.
type Funnel struct {
	Range
	Window int          `json:"window"` // seconds
	Steps  []FunnelStep `json:"steps"`
}

// funnel counts, per step, the devices that did steps 1..k in order with
// step k at most window seconds after step 1, over records of the range
// (ClickHouse's windowFunnel).
func (a *API) funnel(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	steps, e := q.steps()
	if e != nil {
		return nil, e
	}
	window, e := q.integer("window", 86400, 1, int(a.cfg.MaxFunnelWindow.Seconds()))
	if e != nil {
		return nil, e
	}
	// Over funnel_events: a step is a set of tag hashes (a kind may stand
	// for several record kinds), computed by the server from bound names.
	// Placeholders in the order of the text: the conditions' names, the
	// app and dates, the names of the IN filter.
	conds := make([]string, len(steps))
	var all []string
	args := make([]any, 0, 8*len(steps)+3)
	var filterArgs []any
	for i, s := range steps {
		var hashes []string
		for _, k := range stepKinds[s.Kind] {
			hashes = append(hashes, "cityHash64('"+k+"', ?)")
			args = append(args, s.Name)
			filterArgs = append(filterArgs, s.Name)
		}
		conds[i] = "tag IN (" + strings.Join(hashes, ", ") + ")"
		all = append(all, hashes...)
	}
	args = append(args, app, from.Format(dateLayout), to.Format(dateLayout))
	args = append(args, filterArgs...)
	sql := `SELECT level, count()
		FROM (SELECT windowFunnel(` + strconv.Itoa(window) + `)(ts, ` + strings.Join(conds, ", ") + `) AS level
			FROM ` + a.table("funnel_events") + `
			WHERE app = ? AND event_date >= toDate(?) AND event_date <= toDate(?) AND tag IN (` + strings.Join(all, ", ") + `)
			GROUP BY device_key)
		WHERE level > 0 GROUP BY level`
	reached := make([]uint64, len(steps)+1)
	err := a.each(ctx, sql, args, func(r driver.Rows) error {
		var level uint8
		var n uint64
		if err := r.Scan(&level, &n); err != nil {
			return err
		}
		if int(level) < len(reached) {
			reached[level] = n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := Funnel{Range: newRange(app, from, to), Window: window, Steps: make([]FunnelStep, len(steps))}
	var sum uint64
	for i := len(steps) - 1; i >= 0; i-- {
		sum += reached[i+1]
		res.Steps[i] = FunnelStep{steps[i], sum}
	}
	return res, nil
}

// TopName is one name of /top.
type TopName struct {
	Name    string `json:"name"`
	Records uint64 `json:"records"` // distinct records (device, message id)
	Devices uint64 `json:"devices"`
}

// Top is the answer of /top.
type Top struct {
	Range
	Kind  string    `json:"kind"`
	Names []TopName `json:"names"`
}

// top lists the names of a kind by distinct records, then devices, then
// name.
func (a *API) top(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	kind, e := q.enum("kind", "event", "event", "activity", "job", "error", "crash")
	if e != nil {
		return nil, e
	}
	limit, e := q.integer("limit", 20, 1, a.cfg.MaxLimit)
	if e != nil {
		return nil, e
	}
	sql := `SELECT name, uniqExact(device_id, message_id) AS records, uniqExact(device_id) AS devices
		FROM ` + a.table("tags") + `
		WHERE app = ? AND ` + kindIn(kind) + ` AND event_date >= toDate(?) AND event_date <= toDate(?)
		GROUP BY name ORDER BY records DESC, devices DESC, name LIMIT ` + strconv.Itoa(limit)
	res := Top{Range: newRange(app, from, to), Kind: kind, Names: []TopName{}}
	err := a.each(ctx, sql, []any{app, from.Format(dateLayout), to.Format(dateLayout)}, func(r driver.Rows) error {
		var t TopName
		if err := r.Scan(&t.Name, &t.Records, &t.Devices); err != nil {
			return err
		}
		res.Names = append(res.Names, t)
		return nil
	})
	return res, err
}

// Jobs is the answer of /jobs: durations of finished jobs (job and job_end
// records) named name in the range, each record counted once.
type Jobs struct {
	Range
	Name         string   `json:"name"`
	Jobs         uint64   `json:"jobs"`          // distinct job and job_end records
	WithDuration uint64   `json:"with_duration"` // those with a duration
	MeanMS       *float64 `json:"mean_ms"`       // null when with_duration is 0
	P50MS        *float64 `json:"p50_ms"`        // quantileExact: the value at ⌊p·n⌋ of the sorted durations
	P90MS        *float64 `json:"p90_ms"`
	P99MS        *float64 `json:"p99_ms"`
}

func (a *API) jobs(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	name, e := q.text("name", maxNameLen, "give the job's name")
	if e != nil {
		return nil, e
	}
	sql := `SELECT count(), countIf(d > 0), avgIf(d, d > 0), quantilesExactIf(0.5, 0.9, 0.99)(d, d > 0)
		FROM (SELECT any(duration_ms) AS d FROM ` + a.table("tags") + `
			WHERE app = ? AND ` + kindIn("job") + ` AND name = ? AND event_date >= toDate(?) AND event_date <= toDate(?)
			GROUP BY device_id, message_id)`
	res := Jobs{Range: newRange(app, from, to), Name: name}
	var mean float64
	var ps []float64
	err := a.each(ctx, sql, []any{app, name, from.Format(dateLayout), to.Format(dateLayout)}, func(r driver.Rows) error {
		return r.Scan(&res.Jobs, &res.WithDuration, &mean, &ps)
	})
	if err != nil {
		return nil, err
	}
	if res.WithDuration > 0 && len(ps) == 3 {
		res.MeanMS, res.P50MS, res.P90MS, res.P99MS = &mean, &ps[0], &ps[1], &ps[2]
	}
	return res, nil
}

// InfoValue is one value of an app-info key and the devices whose latest
// value it is.
type InfoValue struct {
	Value   string `json:"value"` // as text: numbers as Go's 'g' format, dates RFC 3339
	Type    string `json:"type"`  // string, number, bool or date
	Devices uint64 `json:"devices"`
}

// AppInfo is the answer of /app-info.
type AppInfo struct {
	App            string      `json:"app"`
	Key            string      `json:"key"`
	Devices        uint64      `json:"devices"`         // devices with a value
	DistinctValues uint64      `json:"distinct_values"` // (value, type) pairs
	Values         []InfoValue `json:"values"`          // most devices first, at most limit
}

// appInfo reads each device's latest value of key (argMax by updated_at)
// and counts devices per value.
func (a *API) appInfo(ctx context.Context, app string, q *query) (any, error) {
	key, ok := q.vals["key"]
	if !ok || key == "" {
		return nil, missing("key", "give an app-info key")
	}
	if !tag.ValidKey(key) {
		return nil, badParam("key", "%q is not an app-info key: keys match ^[A-Za-z][A-Za-z0-9_]*$ and have at most %d bytes", clip(key), tag.MaxKeyLen)
	}
	limit, e := q.integer("limit", 100, 1, a.cfg.MaxLimit)
	if e != nil {
		return nil, e
	}
	latest := `SELECT argMax(tuple(type, value), updated_at) AS tv FROM ` + a.table("app_info") + `
		WHERE app = ? AND key = ? GROUP BY device_id`
	res := AppInfo{App: app, Key: key, Values: []InfoValue{}}
	err := a.each(ctx, `SELECT count(), uniqExact(tv) FROM (`+latest+`)`, []any{app, key}, func(r driver.Rows) error {
		return r.Scan(&res.Devices, &res.DistinctValues)
	})
	if err != nil {
		return nil, err
	}
	sql := `SELECT tv.1 AS t, tv.2 AS v, count() AS n FROM (` + latest + `)
		GROUP BY t, v ORDER BY n DESC, v, t LIMIT ` + strconv.Itoa(limit)
	err = a.each(ctx, sql, []any{app, key}, func(r driver.Rows) error {
		var t uint8
		var v InfoValue
		if err := r.Scan(&t, &v.Value, &v.Devices); err != nil {
			return err
		}
		v.Type = tag.Type(t).String()
		res.Values = append(res.Values, v)
		return nil
	})
	return res, err
}
