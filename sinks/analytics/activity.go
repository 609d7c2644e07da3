package analytics

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

const day = 24 * time.Hour

// Range is the date range an answer covers, inclusive, as YYYY-MM-DD (UTC).
type Range struct {
	App  string `json:"app"`
	From string `json:"from"`
	To   string `json:"to"`
}

func newRange(app string, from, to time.Time) Range {
	return Range{app, from.Format(dateLayout), to.Format(dateLayout)}
}

// DayCount is a number of devices on a day or in a period starting then.
type DayCount struct {
	Start   string `json:"start"`
	Devices uint64 `json:"devices"`
}

// Active is the answer of /active.
type Active struct {
	Range
	Period  string     `json:"period"`
	Periods []DayCount `json:"periods"` // every period that meets the range, oldest first
}

// periodSQL maps period= to the expression that buckets a Date column.
var periodSQL = map[string]string{"day": "day", "week": "toMonday(day)", "month": "toStartOfMonth(day)"}

// periodStart returns the first day of d's period, as periodSQL does.
func periodStart(d time.Time, period string) time.Time {
	switch period {
	case "week":
		return d.AddDate(0, 0, -(int(d.Weekday())+6)%7)
	case "month":
		return time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return d
}

func nextPeriod(d time.Time, period string) time.Time {
	switch period {
	case "week":
		return d.AddDate(0, 0, 7)
	case "month":
		return d.AddDate(0, 1, 0)
	}
	return d.AddDate(0, 0, 1)
}

// dayCounts runs a query of (YYYY-MM-DD, count) rows and returns a count
// for every period from from's to to, zero where the query had no row.
func (a *API) dayCounts(ctx context.Context, from, to time.Time, period, sql string, args ...any) ([]DayCount, error) {
	got := map[string]uint64{}
	err := a.each(ctx, sql, args, func(r driver.Rows) error {
		var d string
		var n uint64
		if err := r.Scan(&d, &n); err != nil {
			return err
		}
		got[d] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := []DayCount{}
	for d := periodStart(from, period); !d.After(to); d = nextPeriod(d, period) {
		s := d.Format(dateLayout)
		out = append(out, DayCount{s, got[s]})
	}
	return out, nil
}

// active counts distinct devices with any record in each period. Periods
// are clipped to the range: a week that starts before from counts only the
// days from from on. It reads the active_daily rollup, whose uniqExact
// states merge exactly across days.
func (a *API) active(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	period, e := q.enum("period", "day", "day", "week", "month")
	if e != nil {
		return nil, e
	}
	sql := `SELECT toString(` + periodSQL[period] + `) AS p, uniqExactMerge(devices)
		FROM ` + a.table("active_daily") + `
		WHERE app = ? AND day >= toDate(?) AND day <= toDate(?)
		GROUP BY p ORDER BY p`
	periods, err := a.dayCounts(ctx, from, to, period, sql, app, from.Format(dateLayout), to.Format(dateLayout))
	if err != nil {
		return nil, err
	}
	return Active{newRange(app, from, to), period, periods}, nil
}

// NewDevices is the answer of /new-devices.
type NewDevices struct {
	Range
	Total uint64     `json:"total"`
	Days  []DayCount `json:"days"`
}

// newDevices counts devices by the day of their first record of any kind,
// over all time.
func (a *API) newDevices(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	sql := `SELECT toString(first) AS d, count()
		FROM (SELECT device_id, min(event_date) AS first FROM ` + a.table("tags") + `
			WHERE app = ? GROUP BY device_id
			HAVING first >= toDate(?) AND first <= toDate(?))
		GROUP BY d ORDER BY d`
	days, err := a.dayCounts(ctx, from, to, "day", sql, app, from.Format(dateLayout), to.Format(dateLayout))
	if err != nil {
		return nil, err
	}
	res := NewDevices{Range: newRange(app, from, to), Days: days}
	for _, d := range days {
		res.Total += d.Devices
	}
	return res, nil
}

// Sessions is the answer of /sessions.
type Sessions struct {
	Range
	Sessions      uint64   `json:"sessions"`       // sessions that started in the range
	WithLength    uint64   `json:"with_length"`    // those whose length is known
	MeanSeconds   *float64 `json:"mean_seconds"`   // null when with_length is 0
	MedianSeconds *float64 `json:"median_seconds"` // quantileExact(0.5): the upper middle value
}

// sessions reads the sessions table, folded per (device, session id):
// a session started in the range if a session_start was seen and its
// earliest record falls on a day of the range (UTC). Its length is the
// session_end's duration if one was given, else last minus first record
// time if a session_end was seen, else unknown.
func (a *API) sessions(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	sql := `SELECT count(), countIf(known), avgIf(len, known), quantileExactIf(0.5)(len, known)
		FROM (
			SELECT minMerge(started) AS s, maxMerge(ended) AS e, maxMerge(duration_ms) AS d,
				maxMerge(has_start) AS hs, maxMerge(has_end) AS he,
				d > 0 OR he = 1 AS known,
				if(d > 0, d / 1000, toFloat64(e) - toFloat64(s)) AS len
			FROM ` + a.table("sessions") + `
			WHERE app = ?
			GROUP BY device_id, session_id
			HAVING hs = 1 AND toDate(s, 'UTC') >= toDate(?) AND toDate(s, 'UTC') <= toDate(?))`
	res := Sessions{Range: newRange(app, from, to)}
	var mean, median float64
	err := a.each(ctx, sql, []any{app, from.Format(dateLayout), to.Format(dateLayout)}, func(r driver.Rows) error {
		return r.Scan(&res.Sessions, &res.WithLength, &mean, &median)
	})
	if err != nil {
		return nil, err
	}
	if res.WithLength > 0 && !math.IsNaN(mean) {
		res.MeanSeconds, res.MedianSeconds = &mean, &median
	}
	return res, nil
}

// Cohort is one day's cohort in /retention.
type Cohort struct {
	Day  string `json:"day"`
	Size uint64 `json:"size"`
	// Retained[k-1] is how many of the cohort were active on day+k.
	Retained []uint64 `json:"retained"`
}

// Retention is the answer of /retention.
type Retention struct {
	Range
	Days    int      `json:"days"`
	Cohorts []Cohort `json:"cohorts"`
}

// retention groups devices by the day of their first session_start ever
// (cohorts from..to) and counts, for k = 1..days, those with any record on
// cohort day + k. A device has a record on its cohort day (its first
// session_start), so k = 0 counts the cohort.
func (a *API) retention(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	n, e := q.integer("days", 30, 1, a.cfg.MaxRetentionDays)
	if e != nil {
		return nil, e
	}
	days := strconv.Itoa(n) // a validated integer
	// One pass per device: its first session_start ever (the WHERE keeps
	// every session_start) and its active days from from to to+days. A
	// lambda would be shorter, but 18.16 does not see joined or aggregated
	// columns inside lambdas; arrayJoin gives one row per (cohort, k).
	sql := `SELECT toString(c) AS cd, dateDiff('day', c, d) AS k, count()
		FROM (SELECT c, arrayJoin(days) AS d
			FROM (SELECT device_id, minIf(event_date, kind = 'session_start') AS c, groupUniqArray(event_date) AS days
				FROM ` + a.table("tags") + `
				WHERE app = ? AND (kind = 'session_start' OR (event_date >= toDate(?) AND event_date <= toDate(?) + ` + days + `))
				GROUP BY device_id
				HAVING countIf(kind = 'session_start') > 0 AND c >= toDate(?) AND c <= toDate(?)))
		WHERE k >= 0 AND k <= ` + days + `
		GROUP BY cd, k`
	f, t := from.Format(dateLayout), to.Format(dateLayout)
	got := map[string][]uint64{}
	err := a.each(ctx, sql, []any{app, f, t, f, t}, func(r driver.Rows) error {
		var cd string
		var k int64
		var count uint64
		if err := r.Scan(&cd, &k, &count); err != nil {
			return err
		}
		if got[cd] == nil {
			got[cd] = make([]uint64, n+1)
		}
		if k >= 0 && k <= int64(n) {
			got[cd][k] = count
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := Retention{Range: newRange(app, from, to), Days: n, Cohorts: []Cohort{}}
	for d := from; !d.After(to); d = d.Add(day) {
		c := Cohort{Day: d.Format(dateLayout), Retained: make([]uint64, n)}
		if counts := got[c.Day]; counts != nil {
			c.Size = counts[0]
			copy(c.Retained, counts[1:])
		}
		res.Cohorts = append(res.Cohorts, c)
	}
	return res, nil
}
