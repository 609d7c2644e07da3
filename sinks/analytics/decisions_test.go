package analytics_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

func devicePath(app, campaign, device string) string {
	return "/v1/apps/" + url.PathEscape(app) + "/campaigns/" + url.PathEscape(campaign) + "/devices/" + url.PathEscape(device) + "/decisions"
}

func campaignPath(app, campaign, from, to string) string {
	return "/v1/apps/" + url.PathEscape(app) + "/campaigns/" + url.PathEscape(campaign) + "/decisions?" + url.Values{"from": {from}, "to": {to}}.Encode()
}

// TestDecisions compares both decisions endpoints with the reference
// computed in Go from the generated decisions, on the real ClickHouse,
// before and after the table merges the copies away.
func TestDecisions(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	s := genDecisionSet(20260302, 40, true)
	if s.straddle == 0 {
		t.Fatal("no decision decided again across midnight: change the seed")
	}
	w := clickhouse.NewWriter(conn, cfg.Database)
	for i := 0; i < len(s.copies); i += 500 {
		if err := w.WriteDecisions(context.Background(), s.copies[i:min(i+500, len(s.copies))]); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d decisions, %d copies stored, %d decided again across midnight", len(s.kept), len(s.copies), s.straddle)
	h := newAPI(t, conn, cfg.Database)
	compare := func(t *testing.T) {
		sent, asked := 0, 0
		for app, devs := range s.devices {
			for _, camp := range append(s.campaigns, "never_ran") {
				for _, dev := range devs {
					want := s.device(app, camp, dev)
					sent += want.Sent
					asked++
					check(t, h, devicePath(app, camp, dev), want)
				}
				for d := day0.AddDate(0, 0, -1); d.Before(day0.AddDate(0, 0, 37)); d = d.AddDate(0, 0, 1) {
					check(t, h, campaignPath(app, camp, d.Format(layout), d.Format(layout)), s.counts(app, camp, d, d))
				}
				for _, r := range [][2]string{{"2026-03-02", "2026-04-10"}, {"2026-03-11", "2026-03-29"}, {"2025-01-01", "2025-02-01"}, {"1970-01-01", "1970-01-03"}} {
					check(t, h, campaignPath(app, camp, r[0], r[1]), s.counts(app, camp, date(r[0]), date(r[1])))
				}
			}
		}
		if sent == 0 || t.Failed() {
			t.Fatalf("%d occurrences sent over %d questions", sent, asked)
		}
	}
	t.Run("BeforeMerge", compare)
	t.Run("AfterMerge", func(t *testing.T) {
		if err := conn.Exec(context.Background(), "OPTIMIZE TABLE "+cfg.Database+".decisions FINAL"); err != nil {
			t.Fatal(err)
		}
		var rows uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+cfg.Database+".decisions").Scan(&rows); err != nil || rows > uint64(len(s.kept)+s.straddle) {
			t.Fatalf("after OPTIMIZE FINAL: %d rows (%v), want at most %d", rows, err, len(s.kept)+s.straddle)
		}
		compare(t)
	})
	t.Run("Example", func(t *testing.T) {
		// One answer in full, for the docs: a device with a deferral.
		for _, dev := range s.devices[newsApp] {
			for _, camp := range s.campaigns {
				if want := s.device(newsApp, camp, dev); want.Sent > 0 && len(want.Occurrences) > 1 && len(want.Decisions) > 2 {
					_, body := get(h, allToken, devicePath(newsApp, camp, dev))
					t.Logf("GET %s\n%s", devicePath(newsApp, camp, dev), body)
					_, body = get(h, allToken, campaignPath(newsApp, camp, "2026-03-02", "2026-03-04"))
					t.Logf("GET %s\n%s", campaignPath(newsApp, camp, "2026-03-02", "2026-03-04"), body)
					return
				}
			}
		}
	})
	t.Run("Injection", func(t *testing.T) {
		for _, p := range payloads {
			for _, path := range []string{devicePath(newsApp, "welcome_d2", p), devicePath(p, "welcome_d2", "dev-001"), devicePath(newsApp, p, "dev-001"),
				campaignPath(newsApp, p, "2026-03-02", "2026-03-09"), campaignPath(p, "lapsed", "2026-03-02", "2026-03-09")} {
				code, body := get(h, allToken, path)
				switch {
				case code == http.StatusBadRequest:
				case code == http.StatusOK && strings.Contains(path, "/devices/"):
					var got struct{ Decisions []any }
					if err := json.Unmarshal(body, &got); err != nil || len(got.Decisions) != 0 {
						t.Errorf("%q: %s", path, body)
					}
				case code == http.StatusOK:
					var got struct{ Decisions uint64 }
					if err := json.Unmarshal(body, &got); err != nil || got.Decisions != 0 {
						t.Errorf("%q: %s", path, body)
					}
				default:
					t.Errorf("%q: status %d: %s", path, code, body)
				}
			}
		}
	})
}

// TestDecisionsErrors: bad paths and parameters get a 400 naming the
// parameter, other apps' tokens a 403, as the other endpoints.
func TestDecisionsErrors(t *testing.T) {
	conn, cfg, _ := chtest.Database(t)
	h := newAPI(t, conn, cfg.Database)
	long := strings.Repeat("c", 129)
	dev := "/v1/apps/news/campaigns/welcome/devices/d1/decisions"
	camp := "/v1/apps/news/campaigns/welcome/decisions?"
	for _, tc := range []struct {
		name, token, path string
		status            int
		code, param       string
	}{
		{"device", allToken, dev, 200, "", ""},
		{"campaign", allToken, camp + rangeQ, 200, "", ""},
		{"own app", newsToken, dev, 200, "", ""},
		{"other app, device", newsToken, "/v1/apps/other/campaigns/welcome/devices/d1/decisions", 403, "forbidden", "app"},
		{"other app, campaign", newsToken, "/v1/apps/other/campaigns/welcome/decisions?" + rangeQ, 403, "forbidden", "app"},
		{"other app with a bad campaign", newsToken, "/v1/apps/other/campaigns/a%20b/decisions?" + rangeQ, 403, "forbidden", "app"},
		{"no token", "", dev, 401, "unauthorized", ""},
		{"campaign syntax", allToken, "/v1/apps/news/campaigns/a%20b/devices/d1/decisions", 400, "invalid_param", "campaign"},
		{"campaign starts with _", allToken, "/v1/apps/news/campaigns/_x/decisions?" + rangeQ, 400, "invalid_param", "campaign"},
		{"campaign too long", allToken, "/v1/apps/news/campaigns/" + long + "/decisions?" + rangeQ, 400, "invalid_param", "campaign"},
		{"campaign 128 bytes", allToken, "/v1/apps/news/campaigns/" + long[1:] + "/decisions?" + rangeQ, 200, "", ""},
		{"campaign empty", allToken, "/v1/apps/news/campaigns//devices/d1/decisions", 400, "invalid_param", "campaign"},
		{"device empty", allToken, "/v1/apps/news/campaigns/welcome/devices//decisions", 400, "invalid_param", "device"},
		{"device control char", allToken, "/v1/apps/news/campaigns/welcome/devices/d%0A1/decisions", 400, "invalid_param", "device"},
		{"device too long", allToken, "/v1/apps/news/campaigns/welcome/devices/" + long + "/decisions", 400, "invalid_param", "device"},
		{"device not UTF-8", allToken, "/v1/apps/news/campaigns/welcome/devices/%ff/decisions", 400, "invalid_param", "device"},
		{"app control char", allToken, "/v1/apps/a%01b/campaigns/welcome/devices/d1/decisions", 400, "invalid_param", "app"},
		{"device: a parameter", allToken, dev + "?from=2026-03-02", 400, "unknown_param", "from"},
		{"campaign: from missing", allToken, camp + "to=2026-04-10", 400, "missing_param", "from"},
		{"campaign: to missing", allToken, camp + "from=2026-04-10", 400, "missing_param", "to"},
		{"campaign: from bad", allToken, camp + "from=2026-3-2&to=2026-04-10", 400, "invalid_param", "from"},
		{"campaign: from after to", allToken, camp + "from=2026-04-11&to=2026-04-10", 400, "invalid_param", "from"},
		{"campaign: 401 days", allToken, camp + "from=2025-03-06&to=2026-04-10", 400, "range_too_long", "to"},
		{"campaign: unknown param", allToken, camp + "outcome=sent&" + rangeQ, 400, "unknown_param", "outcome"},
		{"campaign: repeated param", allToken, camp + "from=2026-03-02&" + rangeQ, 400, "invalid_param", "from"},
		{"no such campaign route", allToken, "/v1/apps/news/campaigns/welcome/deliveries", 404, "not_found", ""},
		{"no device route", allToken, "/v1/apps/news/campaigns/welcome/devices/d1", 404, "not_found", ""},
		{"route name as endpoint", allToken, "/v1/apps/news/campaigns%2F%7Bcampaign%7D%2Fdecisions?" + rangeQ, 404, "not_found", ""},
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
