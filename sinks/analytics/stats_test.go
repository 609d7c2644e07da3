package analytics_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/sinks/analytics"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

func statsPath(app, campaign string, params ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		v.Set(params[i], params[i+1])
	}
	return "/v1/apps/" + url.PathEscape(app) + "/campaigns/" + url.PathEscape(campaign) + "/stats?" + v.Encode()
}

// load writes the set through the sink's writers, in batches.
func (s *statsSet) load(t testing.TB, w *clickhouse.Writer) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(s.decisions); i += 500 {
		if err := w.WriteDecisions(ctx, s.decisions[i:min(i+500, len(s.decisions))]); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(s.results); i += 500 {
		if err := w.WriteResults(ctx, s.results[i:min(i+500, len(s.results))]); err != nil {
			t.Fatal(err)
		}
	}
	var rows []clickhouse.Row
	for i, r := range s.tags {
		rows = append(rows, clickhouse.Row{Rec: r, Partition: int32(len(r.DeviceID) % 4), Offset: int64(i)})
	}
	for i := 0; i < len(rows); i += 1000 {
		if err := w.Write(ctx, rows[i:min(i+1000, len(rows))]); err != nil {
			t.Fatal(err)
		}
	}
}

// statsQuery is one question to the stats endpoint.
type statsQuery struct {
	from, to, goal string
	within         time.Duration // 0: not given (24 h)
}

func (q statsQuery) path(app, campaign string) string {
	p := []string{"from", q.from, "to", q.to}
	if q.goal != "" {
		p = append(p, "goal", q.goal)
	}
	if q.within != 0 {
		p = append(p, "within", q.within.String())
	}
	return statsPath(app, campaign, p...)
}

func (q statsQuery) want(s *statsSet, app, campaign string) analytics.CampaignStats {
	w := q.within
	if w == 0 {
		w = 24 * time.Hour
	}
	return s.stats(app, campaign, date(q.from), date(q.to), q.goal, w)
}

var statsQueries = []statsQuery{
	{"2026-03-01", "2026-03-25", goalEvent, 0},
	{"2026-03-01", "2026-03-25", goalEvent, time.Hour},
	{"2026-03-01", "2026-03-25", goalEvent, 72 * time.Hour},
	{"2026-03-05", "2026-03-09", goalEvent, 24 * time.Hour},
	{"2026-03-07", "2026-03-07", goalEvent, 5 * time.Hour},
	{"2026-03-02", "2026-03-20", "", 0},
	{"2026-03-02", "2026-03-20", otherEvent, 0},
	{"2026-03-02", "2026-03-20", "never_happened", 0},
	{"2025-01-01", "2025-01-31", goalEvent, 0},
}

// TestStats compares the stats endpoint with the reference computed in Go
// from the generated history, on the real ClickHouse, before and after the
// tables merge the copies away: audience, sends, control, results by
// outcome and reason, push feedback and its rates, conversions of both
// groups and the lift with its interval.
func TestStats(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	s := genStats(20260310, 80, true)
	s.load(t, clickhouse.NewWriter(conn, cfg.Database))
	t.Logf("%d decisions (%d copies), %d deliveries (%d copies), %d tag rows (%d records), %d written again on another day",
		len(s.keptDec), len(s.decisions), len(s.keptRes), len(s.results), len(s.tags), len(s.events), s.straddle)
	if s.straddle < 5 {
		t.Fatalf("%d sends, control decisions or results written again on another day: change the seed", s.straddle)
	}
	h := newAPI(t, conn, cfg.Database)

	// The dataset must hold what the test is about.
	whole := s.stats(newsApp, "spring", date("2026-03-01"), date("2026-03-25"), goalEvent, 24*time.Hour)
	tot := whole.Totals
	if tot.Sent == 0 || tot.Control == 0 || tot.Results["accepted"] == 0 || len(tot.FailedReasons) < 2 || tot.Opened == 0 || tot.Clicked == 0 || tot.Dismissed == 0 ||
		tot.Conversion.Sent.Converted == 0 || tot.Conversion.Control.Converted == 0 || tot.Conversion.Sent.Converted == tot.Conversion.Sent.Devices || len(whole.Variants) != 2 {
		t.Fatalf("the dataset lacks a case: %+v", tot)
	}
	if short := s.stats(newsApp, "spring", date("2026-03-01"), date("2026-03-25"), goalEvent, time.Hour); short.Totals.Conversion.Sent.Converted >= tot.Conversion.Sent.Converted {
		t.Fatalf("a 1 h window converts %d devices, 24 h %d: the window makes no difference", short.Totals.Conversion.Sent.Converted, tot.Conversion.Sent.Converted)
	}

	compare := func(t *testing.T) {
		for _, app := range []string{newsApp, oddApp, otherApp} {
			for _, camp := range append(statsCampaigns, "never_ran") {
				for _, q := range statsQueries {
					check(t, h, q.path(app, camp), q.want(s, app, camp))
				}
			}
		}
	}
	t.Run("BeforeMerge", compare)
	t.Run("AfterMerge", func(t *testing.T) {
		for _, table := range []string{"decisions", "delivery_results", "tags"} {
			if err := conn.Exec(context.Background(), "OPTIMIZE TABLE "+cfg.Database+"."+table+" FINAL"); err != nil {
				t.Fatal(err)
			}
		}
		compare(t)
	})
	t.Run("Example", func(t *testing.T) {
		_, body := get(h, allToken, statsPath(newsApp, "spring", "from", "2026-03-05", "to", "2026-03-06", "goal", goalEvent, "within", "24h"))
		t.Logf("%s", body)
	})
	t.Run("Injection", func(t *testing.T) {
		for _, p := range payloads {
			for _, path := range []string{statsPath(p, "spring", "from", "2026-03-01", "to", "2026-03-25"), statsPath(newsApp, p, "from", "2026-03-01", "to", "2026-03-25"),
				statsPath(newsApp, "spring", "from", "2026-03-01", "to", "2026-03-25", "goal", p)} {
				code, body := get(h, allToken, path)
				switch code {
				case http.StatusBadRequest:
				case http.StatusOK:
					var got analytics.CampaignStats
					if err := json.Unmarshal(body, &got); err != nil {
						t.Fatalf("%q: %v", path, err)
					}
					if strings.Contains(path, "goal=") {
						if got.Totals.Conversion == nil || got.Totals.Conversion.Sent.Converted != 0 || got.Totals.Conversion.Sent.Devices == 0 {
							t.Errorf("%q: %s", path, body)
						}
					} else if got.Totals.Audience != 0 {
						t.Errorf("%q: %s", path, body)
					}
				default:
					t.Errorf("%q: status %d: %s", path, code, body)
				}
			}
		}
	})
}

// TestLiftCI holds the interval to a worked example: 30 of 100 against 20
// of 100 is a lift of 0.1, ± 1.96·√(0.3·0.7/100 + 0.2·0.8/100) =
// ± 0.11922.
func TestLiftCI(t *testing.T) {
	lift, low, high, ok := analytics.LiftCI(30, 100, 20, 100)
	if !ok || math.Abs(lift-0.1) > 1e-12 || math.Abs(low-(-0.019220)) > 1e-6 || math.Abs(high-0.219220) > 1e-6 {
		t.Errorf("LiftCI(30/100, 20/100) = %v [%v, %v] %v, want 0.1 [-0.019220, 0.219220]", lift, low, high, ok)
	}
	if z := math.Sqrt2 * math.Erfinv(0.95); math.Abs(analytics.Z95-z) > 1e-15 {
		t.Errorf("Z95 %v, want %v", analytics.Z95, z)
	}
	if lift, low, high, ok := analytics.LiftCI(0, 10, 10, 10); !ok || lift != -1 || low != -1 || high != -1 {
		t.Errorf("all against none: %v [%v, %v] %v, want -1 [-1, -1]", lift, low, high, ok)
	}
	for _, tc := range [][4]uint64{{1, 0, 1, 2}, {1, 2, 0, 0}} {
		if _, _, _, ok := analytics.LiftCI(tc[0], tc[1], tc[2], tc[3]); ok {
			t.Errorf("LiftCI%v: ok with an empty group", tc)
		}
	}
}

// TestStatsErrors: bad paths and parameters get a 400 naming the
// parameter, other apps' tokens a 403, as the other endpoints.
func TestStatsErrors(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	h := newAPI(t, conn, cfg.Database)
	p := "/v1/apps/news/campaigns/spring/stats?"
	long := strings.Repeat("n", 257)
	for _, tc := range []struct {
		name, token, path string
		status            int
		code, param       string
	}{
		{"range", allToken, p + rangeQ, 200, "", ""},
		{"goal", allToken, p + rangeQ + "&goal=purchase", 200, "", ""},
		{"goal and within", allToken, p + rangeQ + "&goal=purchase&within=90m", 200, "", ""},
		{"within in days", allToken, p + rangeQ + "&goal=purchase&within=7d", 200, "", ""},
		{"within 90 days", allToken, p + rangeQ + "&goal=purchase&within=90d", 200, "", ""},
		{"goal 256 bytes", allToken, p + rangeQ + "&goal=" + long[1:], 200, "", ""},
		{"own app", newsToken, p + rangeQ, 200, "", ""},
		{"other app", newsToken, "/v1/apps/other/campaigns/spring/stats?" + rangeQ, 403, "forbidden", "app"},
		{"no token", "", p + rangeQ, 401, "unauthorized", ""},
		{"from missing", allToken, p + "to=2026-04-10", 400, "missing_param", "from"},
		{"to missing", allToken, p + "from=2026-04-10", 400, "missing_param", "to"},
		{"from bad", allToken, p + "from=2026-3-2&to=2026-04-10", 400, "invalid_param", "from"},
		{"from after to", allToken, p + "from=2026-04-11&to=2026-04-10", 400, "invalid_param", "from"},
		{"401 days", allToken, p + "from=2025-03-06&to=2026-04-10", 400, "range_too_long", "to"},
		{"goal empty", allToken, p + rangeQ + "&goal=", 400, "invalid_param", "goal"},
		{"goal too long", allToken, p + rangeQ + "&goal=" + long, 400, "invalid_param", "goal"},
		{"goal control char", allToken, p + rangeQ + "&goal=a%0Ab", 400, "invalid_param", "goal"},
		{"within without goal", allToken, p + rangeQ + "&within=24h", 400, "invalid_param", "within"},
		{"within not a duration", allToken, p + rangeQ + "&goal=purchase&within=soon", 400, "invalid_param", "within"},
		{"within no unit", allToken, p + rangeQ + "&goal=purchase&within=3600", 400, "invalid_param", "within"},
		{"within 0", allToken, p + rangeQ + "&goal=purchase&within=0s", 400, "invalid_param", "within"},
		{"within negative", allToken, p + rangeQ + "&goal=purchase&within=-1h", 400, "invalid_param", "within"},
		{"within fraction", allToken, p + rangeQ + "&goal=purchase&within=1.5s", 400, "invalid_param", "within"},
		{"within 91 days", allToken, p + rangeQ + "&goal=purchase&within=91d", 400, "invalid_param", "within"},
		{"within 2161h", allToken, p + rangeQ + "&goal=purchase&within=2161h", 400, "invalid_param", "within"},
		{"within repeated", allToken, p + rangeQ + "&goal=purchase&within=1h&within=2h", 400, "invalid_param", "within"},
		{"unknown param", allToken, p + rangeQ + "&variant=bonus", 400, "unknown_param", "variant"},
		{"campaign syntax", allToken, "/v1/apps/news/campaigns/a%20b/stats?" + rangeQ, 400, "invalid_param", "campaign"},
		{"campaign empty", allToken, "/v1/apps/news/campaigns//stats?" + rangeQ, 400, "invalid_param", "campaign"},
		{"no such campaign route", allToken, "/v1/apps/news/campaigns/spring/statistics?" + rangeQ, 404, "not_found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(h, tc.token, tc.path)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			if tc.status == 200 {
				return
			}
			var e apiErr
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if e.Error.Code != tc.code || e.Error.Param != tc.param || e.Error.Message == "" {
				t.Errorf("error %+v, want code %q param %q", e.Error, tc.code, tc.param)
			}
			t.Logf("%d %s", code, e.Error.Message)
		})
	}
}
