package analytics_test

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/analytics"
)

// truth answers every endpoint from the generated records in plain Go, with
// no SQL: the reference the API must equal. Records are unique here; the
// database holds redeliveries too. Each app's records are picked out once
// (the answers are asked for hundreds of times, also concurrently).
type truth struct {
	recs  []tag.Record
	once  sync.Once
	byApp map[string][]*tag.Record
}

const layout = "2006-01-02"

func dayOf(t time.Time) time.Time {
	u := t.UTC()
	return time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
}

func within(d, from, to time.Time) bool { return !d.Before(from) && !d.After(to) }

func (tr *truth) of(app string) []*tag.Record {
	tr.once.Do(func() {
		tr.byApp = map[string][]*tag.Record{}
		for i := range tr.recs {
			r := &tr.recs[i]
			tr.byApp[r.AppID] = append(tr.byApp[r.AppID], r)
		}
	})
	return tr.byApp[app]
}

// bucket returns the first day of d's period: Monday weeks, calendar months.
func bucket(d time.Time, period string) time.Time {
	switch period {
	case "week":
		for d.Weekday() != time.Monday {
			d = d.AddDate(0, 0, -1)
		}
	case "month":
		d = d.AddDate(0, 0, 1-d.Day())
	}
	return d
}

func step(d time.Time, period string) time.Time {
	return map[string]time.Time{"day": d.AddDate(0, 0, 1), "week": d.AddDate(0, 0, 7), "month": d.AddDate(0, 1, 0)}[period]
}

func (tr *truth) active(app string, from, to time.Time, period string) analytics.Active {
	sets := map[time.Time]map[string]bool{}
	for _, r := range tr.of(app) {
		if d := dayOf(r.Time); within(d, from, to) {
			b := bucket(d, period)
			if sets[b] == nil {
				sets[b] = map[string]bool{}
			}
			sets[b][r.DeviceID] = true
		}
	}
	res := analytics.Active{Range: rng(app, from, to), Period: period, Periods: []analytics.DayCount{}}
	for b := bucket(from, period); !b.After(to); b = step(b, period) {
		res.Periods = append(res.Periods, analytics.DayCount{Start: b.Format(layout), Devices: uint64(len(sets[b]))})
	}
	return res
}

func rng(app string, from, to time.Time) analytics.Range {
	return analytics.Range{App: app, From: from.Format(layout), To: to.Format(layout)}
}

// firstDay returns each device's first day among records that keep says.
func firstDay(recs []*tag.Record, keep func(*tag.Record) bool) map[string]time.Time {
	first := map[string]time.Time{}
	for _, r := range recs {
		if !keep(r) {
			continue
		}
		if f, ok := first[r.DeviceID]; !ok || dayOf(r.Time).Before(f) {
			first[r.DeviceID] = dayOf(r.Time)
		}
	}
	return first
}

func (tr *truth) newDevices(app string, from, to time.Time) analytics.NewDevices {
	n := map[time.Time]uint64{}
	for _, f := range firstDay(tr.of(app), func(*tag.Record) bool { return true }) {
		n[f]++
	}
	res := analytics.NewDevices{Range: rng(app, from, to), Days: []analytics.DayCount{}}
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		res.Days = append(res.Days, analytics.DayCount{Start: d.Format(layout), Devices: n[d]})
		res.Total += n[d]
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile is ClickHouse's quantileExact: the value at ⌊level·n⌋ of the
// sorted values.
func quantile(sorted []float64, level float64) float64 {
	return sorted[min(int(level*float64(len(sorted))), len(sorted)-1)]
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func (tr *truth) sessions(app string, from, to time.Time) analytics.Sessions {
	type sess struct {
		start, end       time.Time
		dur              float64
		hasStart, hasEnd bool
	}
	all := map[[2]string]*sess{}
	for _, r := range tr.of(app) {
		if r.SessionID == "" || r.Kind != tag.KindSessionStart && r.Kind != tag.KindSessionEnd {
			continue
		}
		k := [2]string{r.DeviceID, r.SessionID}
		s := all[k]
		if s == nil {
			s = &sess{start: r.Time, end: r.Time}
			all[k] = s
		}
		s.start, s.end = minT(s.start, r.Time), maxT(s.end, r.Time)
		s.dur = max(s.dur, ms(r.Duration))
		s.hasStart = s.hasStart || r.Kind == tag.KindSessionStart
		s.hasEnd = s.hasEnd || r.Kind == tag.KindSessionEnd
	}
	res := analytics.Sessions{Range: rng(app, from, to)}
	var lens []float64
	for _, s := range all {
		if !s.hasStart || !within(dayOf(s.start), from, to) {
			continue
		}
		res.Sessions++
		switch {
		case s.dur > 0:
			lens = append(lens, s.dur/1000)
		case s.hasEnd:
			lens = append(lens, float64(s.end.Unix()-s.start.Unix()))
		}
	}
	res.WithLength = uint64(len(lens))
	if len(lens) > 0 {
		slices.Sort(lens)
		m, med := mean(lens), quantile(lens, 0.5)
		res.MeanSeconds, res.MedianSeconds = &m, &med
	}
	return res
}

func minT(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxT(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (tr *truth) retention(app string, from, to time.Time, days int) analytics.Retention {
	recs := tr.of(app)
	cohort := firstDay(recs, func(r *tag.Record) bool { return r.Kind == tag.KindSessionStart })
	active := map[string]map[time.Time]bool{}
	for _, r := range recs {
		if active[r.DeviceID] == nil {
			active[r.DeviceID] = map[time.Time]bool{}
		}
		active[r.DeviceID][dayOf(r.Time)] = true
	}
	res := analytics.Retention{Range: rng(app, from, to), Days: days, Cohorts: []analytics.Cohort{}}
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		c := analytics.Cohort{Day: d.Format(layout), Retained: make([]uint64, days)}
		for dev, first := range cohort {
			if !first.Equal(d) {
				continue
			}
			c.Size++
			for k := 1; k <= days; k++ {
				if active[dev][d.AddDate(0, 0, k)] {
					c.Retained[k-1]++
				}
			}
		}
		res.Cohorts = append(res.Cohorts, c)
	}
	return res
}

// matches reports whether r is a record of a funnel step or top kind.
func matches(kind string, r *tag.Record) bool {
	switch kind {
	case "event":
		return r.Kind == tag.KindEvent
	case "activity":
		return r.Kind == tag.KindActivityStart
	case "job":
		return r.Kind == tag.KindJob || r.Kind == tag.KindJobEnd
	case "error":
		return r.Kind == tag.KindError
	case "crash":
		return r.Kind == tag.KindCrash
	}
	return false
}

// funnel: a device reaches step k if some record of step 1 at t0 is
// followed, in time order, by records of steps 2..k, the last at most
// window seconds after t0. The deepest such k counts, over every t0.
func (tr *truth) funnel(app string, from, to time.Time, steps []analytics.Step, window int) analytics.Funnel {
	type hit struct {
		t    int64
		step int
	}
	byDev := map[string][]hit{}
	for _, r := range tr.of(app) {
		if !within(dayOf(r.Time), from, to) {
			continue
		}
		for s, st := range steps {
			if matches(st.Kind, r) && r.Name == st.Name {
				byDev[r.DeviceID] = append(byDev[r.DeviceID], hit{r.Time.Unix(), s})
			}
		}
	}
	reached := make([]uint64, len(steps))
	for _, hits := range byDev {
		slices.SortStableFunc(hits, func(a, b hit) int { return cmp.Compare(a.t, b.t) })
		level := 0
		for i, h := range hits {
			if h.step != 0 {
				continue
			}
			next := 1
			for _, g := range hits[i+1:] {
				if g.t > h.t+int64(window) || next == len(steps) {
					break
				}
				if g.step == next {
					next++
				}
			}
			level = max(level, next)
		}
		for k := range level {
			reached[k]++
		}
	}
	res := analytics.Funnel{Range: rng(app, from, to), Window: window}
	for i, st := range steps {
		res.Steps = append(res.Steps, analytics.FunnelStep{Step: st, Devices: reached[i]})
	}
	return res
}

func (tr *truth) top(app string, from, to time.Time, kind string, limit int) analytics.Top {
	recs := map[string]int{}
	devs := map[string]map[string]bool{}
	for _, r := range tr.of(app) {
		if !matches(kind, r) || !within(dayOf(r.Time), from, to) {
			continue
		}
		recs[r.Name]++
		if devs[r.Name] == nil {
			devs[r.Name] = map[string]bool{}
		}
		devs[r.Name][r.DeviceID] = true
	}
	res := analytics.Top{Range: rng(app, from, to), Kind: kind, Names: []analytics.TopName{}}
	for name, n := range recs {
		res.Names = append(res.Names, analytics.TopName{Name: name, Records: uint64(n), Devices: uint64(len(devs[name]))})
	}
	slices.SortFunc(res.Names, func(a, b analytics.TopName) int {
		return cmp.Or(cmp.Compare(b.Records, a.Records), cmp.Compare(b.Devices, a.Devices), cmp.Compare(a.Name, b.Name))
	})
	res.Names = res.Names[:min(limit, len(res.Names))]
	return res
}

func (tr *truth) jobs(app string, from, to time.Time, name string) analytics.Jobs {
	res := analytics.Jobs{Range: rng(app, from, to), Name: name}
	var ds []float64
	for _, r := range tr.of(app) {
		if !matches("job", r) || r.Name != name || !within(dayOf(r.Time), from, to) {
			continue
		}
		res.Jobs++
		if r.Duration > 0 {
			ds = append(ds, ms(r.Duration))
		}
	}
	res.WithDuration = uint64(len(ds))
	if len(ds) > 0 {
		slices.Sort(ds)
		m, p50, p90, p99 := mean(ds), quantile(ds, 0.5), quantile(ds, 0.9), quantile(ds, 0.99)
		res.MeanMS, res.P50MS, res.P90MS, res.P99MS = &m, &p50, &p90, &p99
	}
	return res
}

func (tr *truth) appInfo(app, key string, limit int) analytics.AppInfo {
	type latest struct {
		at time.Time
		v  tag.Value
	}
	per := map[string]latest{}
	for _, r := range tr.of(app) {
		for _, x := range r.AppInfo {
			if l, ok := per[r.DeviceID]; x.Key == key && (!ok || r.Time.After(l.at)) {
				per[r.DeviceID] = latest{r.Time, x.Value}
			}
		}
	}
	n := map[analytics.InfoValue]uint64{}
	for _, l := range per {
		n[analytics.InfoValue{Value: l.v.Text(), Type: l.v.Type.String()}]++
	}
	res := analytics.AppInfo{App: app, Key: key, Devices: uint64(len(per)), DistinctValues: uint64(len(n)), Values: []analytics.InfoValue{}}
	for v, c := range n {
		v.Devices = c
		res.Values = append(res.Values, v)
	}
	slices.SortFunc(res.Values, func(a, b analytics.InfoValue) int {
		return cmp.Or(cmp.Compare(b.Devices, a.Devices), cmp.Compare(a.Value, b.Value), cmp.Compare(typeNum(a.Type), typeNum(b.Type)))
	})
	res.Values = res.Values[:min(limit, len(res.Values))]
	return res
}

func typeNum(s string) tag.Type {
	t, _ := tag.ParseType(s)
	return t
}
