package analytics_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse"
)

// The apps of the dataset. oddApp's id holds a quote and a backslash: it
// must be read as a literal.
const (
	newsApp  = "news"
	oddApp   = `o'reilly \ app`
	otherApp = "other"
)

// Names with quotes and backslashes, sent as data: queries must treat them
// as literals.
const (
	oddEvent = `it's a \'quoted\' event`
	oddJob   = `job\with'quote`
)

var day0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // a Monday

const newsPlanYAML = `app: news
mode: warn
activities:
  home: {}
  article: {extras: {category: string}}
  login: {}
events:
  article_read: {extras: {category: string, words: number}}
  logged_in: {}
  shared: {extras: {network: string}}
  never_sent: {}
jobs:
  login: {}
  sync: {}
errors:
  connection_failure: {extras: {code: number}}
crashes:
  OutOfMemory: {}
app_info:
  plan: string
  logged_in: bool
  level: number
`

// newsPlanned is what newsPlanYAML declares, as the lead's PlanSource will
// give it.
var newsPlanned = analytics.PlannedTags{Tags: []analytics.PlannedTag{
	{"activity", "home"}, {"activity", "article"}, {"activity", "login"},
	{"event", "article_read"}, {"event", "logged_in"}, {"event", "shared"}, {"event", "never_sent"},
	{"job", "login"}, {"job", "sync"}, {"error", "connection_failure"}, {"crash", "OutOfMemory"},
}}

// oddPlanned allows any crash.
var oddPlanned = analytics.PlannedTags{Tags: []analytics.PlannedTag{{"event", "article_read"}}, AnyCrash: true}

var (
	activities = []string{"home", "article", "login", "settings"}
	events     = []string{"article_read", "article_read", "shared", "logged_in", "foo", oddEvent}
	jobNames   = []string{"login", "sync", "upload", oddJob}
	errorNames = []string{"connection_failure", "timeout"}
	crashNames = []string{"OutOfMemory", "NullPointer"}
	versions   = []string{"1.0", "1.1", "", "unknown"}
)

// dataset is a seeded, random set of tag records: the truth (each record
// once) and the rows inserted (with redeliveries).
type dataset struct {
	recs []tag.Record
	rows []clickhouse.Row
	days int
}

// gen builds the records of one device.
type gen struct {
	rng *rand.Rand
	app string
	dev string
	t   time.Time // the device's clock: strictly increasing, whole seconds
	n   int       // records so far, for ids
	ver string
	out *[]tag.Record
}

func (g *gen) rec(kind tag.Kind, name string) *tag.Record {
	g.t = g.t.Add(time.Duration(1+g.rng.IntN(90)) * time.Second)
	g.n++
	r := tag.Record{Kind: kind, AppID: g.app, DeviceID: g.dev, MessageID: fmt.Sprintf("%s-%d", g.dev, g.n),
		Time: g.t, SentAt: g.t.Add(2 * time.Second), ReceivedAt: g.t.Add(3 * time.Second), AppVersion: g.ver, Name: name}
	if g.rng.IntN(3) == 0 {
		r.UserID = "u-" + g.dev
	}
	*g.out = append(*g.out, r)
	return &(*g.out)[len(*g.out)-1]
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// session adds one session's records; sid may be empty.
func (g *gen) session(sid string) {
	rng := g.rng
	started := g.t
	if rng.IntN(30) != 0 { // sometimes only the end is seen
		s := g.rec(tag.KindSessionStart, "")
		s.SessionID, started = sid, s.Time
	}
	activity := ""
	for range 1 + rng.IntN(12) {
		switch k := rng.IntN(20); {
		case k < 5:
			activity = pick(rng, activities)
			a := g.rec(tag.KindActivityStart, activity)
			if activity == "article" {
				a.Extras = []tag.Extra{{Key: "category", Value: tag.String(pick(rng, []string{"sport", "tech"}))}}
			}
			if rng.IntN(3) == 0 {
				g.rec(tag.KindActivityEnd, activity).Duration = time.Duration(1+rng.IntN(60000)) * time.Millisecond
			}
		case k < 12:
			e := g.rec(tag.KindEvent, pick(rng, events))
			e.Activity, e.SessionID = activity, sid
			if e.Name == "article_read" {
				e.Extras = []tag.Extra{{Key: "words", Value: tag.Number(float64(rng.IntN(3000)))}}
				if rng.IntN(10) == 0 {
					e.Extras = append(e.Extras, tag.Extra{Key: "zbogus", Value: tag.Bool(true)})
				}
			}
		case k < 15:
			name := pick(rng, jobNames)
			if rng.IntN(2) == 0 {
				g.rec(tag.KindJob, name).Duration = time.Duration(1+rng.IntN(5000000)) * time.Microsecond
				break
			}
			id := fmt.Sprintf("j%d", g.n)
			g.rec(tag.KindJobStart, name).JobID = id
			end := g.rec(tag.KindJobEnd, name)
			end.JobID = id
			if rng.IntN(4) != 0 {
				end.Duration = time.Duration(1+rng.IntN(900000)) * time.Millisecond
			}
		case k < 17:
			g.rec(tag.KindError, pick(rng, errorNames)).Extras = []tag.Extra{{Key: "code", Value: tag.String("503")}}
		case k < 18:
			if rng.IntN(4) == 0 {
				g.rec(tag.KindCrash, pick(rng, crashNames))
			}
		default:
			g.appInfo()
		}
	}
	switch rng.IntN(10) {
	case 0, 1: // open: no end seen
	case 2, 3, 4: // an end without a duration
		g.rec(tag.KindSessionEnd, "").SessionID = sid
	default:
		e := g.rec(tag.KindSessionEnd, "")
		e.SessionID = sid
		e.Duration = e.Time.Sub(started) + time.Duration(rng.IntN(5000))*time.Millisecond
	}
}

func (g *gen) appInfo() {
	r := g.rec(tag.KindAppInfo, "")
	rng := g.rng
	switch rng.IntN(4) {
	case 0:
		r.AppInfo = []tag.Extra{{Key: "plan", Value: tag.String(pick(rng, []string{"free", "premium", "trial", `it's`}))}}
	case 1:
		r.AppInfo = []tag.Extra{{Key: "logged_in", Value: tag.String(pick(rng, []string{"true", "false"}))}} // coerced by the plan
	case 2:
		r.AppInfo = []tag.Extra{{Key: "level", Value: tag.Number(float64(rng.IntN(12)))}, {Key: "nickname", Value: tag.String("n")}}
	default:
		r.AppInfo = []tag.Extra{{Key: "plan", Value: tag.Number(1)}} // a number where a string is planned
	}
}

// device adds all records of one device over days days.
func (g *gen) device(days int) {
	rng := g.rng
	first := rng.IntN(days - 3)
	engaged := rng.IntN(3) == 0
	g.ver = pick(rng, versions)
	noSessions := rng.IntN(20) == 0
	if rng.IntN(6) == 0 && first > 1 { // seen before its first session
		g.t = day0.AddDate(0, 0, first-1-rng.IntN(2)).Add(time.Duration(rng.IntN(20*3600)) * time.Second)
		g.rec(tag.KindDevice, "").Device = &tag.DeviceInfo{Platform: "ios", AppVersion: g.ver}
		g.appInfo()
	}
	sessions := 0
	for d := first; d < days; d++ {
		if d > first && rng.Float64() > map[bool]float64{true: 0.55, false: 0.15}[engaged] {
			continue
		}
		if rng.IntN(15) == 0 && g.ver != "2.0" {
			g.ver = "2.0"
		}
		// Mostly daytime; sometimes just before midnight, so that a
		// session spills into the next day.
		start := day0.AddDate(0, 0, d).Add(time.Duration(7*3600+rng.IntN(14*3600)) * time.Second)
		if rng.IntN(12) == 0 {
			start = day0.AddDate(0, 0, d).Add(23*time.Hour + 50*time.Minute)
		}
		if start.After(g.t) {
			g.t = start
		}
		for range 1 + rng.IntN(3) {
			if noSessions {
				g.rec(tag.KindEvent, pick(rng, events))
				continue
			}
			sessions++
			sid := fmt.Sprintf("s%d", sessions)
			if rng.IntN(30) == 0 {
				sid = ""
			}
			g.session(sid)
		}
	}
}

// generate builds the dataset: devices per app over days days, with seed.
func generate(t testing.TB, seed uint64, devices map[string]int, days int) *dataset {
	t.Helper()
	plan, err := tagplan.Parse("news.yaml", []byte(newsPlanYAML))
	if err != nil {
		t.Fatal(err)
	}
	ds := &dataset{days: days}
	for _, app := range []string{newsApp, oddApp, otherApp} {
		for i := range devices[app] {
			var recs []tag.Record
			g := &gen{rng: rand.New(rand.NewPCG(seed, uint64(i)<<8|uint64(len(app)))), app: app, dev: fmt.Sprintf("d%03d", i), out: &recs}
			g.device(days)
			ds.recs = append(ds.recs, recs...)
		}
	}
	// Client-chosen ids may repeat across devices: the table keeps both
	// (its key is app, device_id, message_id), and so must every count.
	shared := 0
	for i := range ds.recs {
		r := &ds.recs[i]
		if r.AppID == newsApp && r.Kind == tag.KindEvent && shared < 2 && (shared == 0 || r.DeviceID != "d000") {
			r.MessageID, r.Name, r.Extras = "client-chosen-id", "shared", nil
			shared++
		}
	}
	for i := range ds.recs {
		r := &ds.recs[i]
		if err := r.Validate(); err != nil {
			t.Fatalf("generated record %d: %v", i, err)
		}
		if r.AppID == newsApp {
			if err := plan.Apply(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Rows: every record once, then about a tenth again (a redelivery),
	// and one stretch twice more (a retried batch).
	rng := rand.New(rand.NewPCG(seed, 99))
	for i, r := range ds.recs {
		ds.rows = append(ds.rows, clickhouse.Row{Rec: r, Partition: int32(i % 4), Offset: int64(i)})
	}
	for i, r := range ds.recs {
		if rng.IntN(10) == 0 {
			ds.rows = append(ds.rows, clickhouse.Row{Rec: r, Partition: int32(i % 4), Offset: int64(i)})
		}
	}
	ds.rows = append(ds.rows, ds.rows[:min(len(ds.rows), 3000)]...)
	return ds
}

// load inserts the rows through the sink's writer, in batches.
func (ds *dataset) load(t testing.TB, w *clickhouse.Writer) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(ds.rows); i += 5000 {
		if err := w.Write(ctx, ds.rows[i:min(i+5000, len(ds.rows))]); err != nil {
			t.Fatal(err)
		}
	}
}
