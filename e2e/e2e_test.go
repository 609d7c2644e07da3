package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
	"github.com/openengage/engage/triggers/scheduler"
)

// onceAt is the instant the suite gives the one-off example (news-alerts),
// inside the simulated weeks: its file's date is years ahead, as a
// campaign saved today must be.
const onceAt = "2026-11-18T19:00"

// scale sets the population: 12 × scale devices (E2E_SCALE, default 250).
func scale() int {
	if n, err := strconv.Atoi(os.Getenv("E2E_SCALE")); err == nil && n > 0 {
		return n
	}
	return 250
}

// TestStrategies runs every example through the whole platform over 20
// simulated days and checks each campaign's recipients and send times,
// its control group, what reached APNs, FCM and the in-app endpoint, and
// what landed in ClickHouse, against the oracle.
func TestStrategies(t *testing.T) {
	s := newStack(t)
	camps := readExamples(t, s.root)
	if t.Failed() {
		t.FailNow()
	}
	devs := population(2026, scale())
	for _, c := range camps {
		if c.When.Once != nil {
			c.When.OnceFileAt, c.When.Once.At = c.When.Once.At, onceAt
		}
	}
	t.Logf("examples/load.sh all:\n%s", s.loadExamples())
	s.moveOnceIntoWindow(camps)
	for _, d := range devs {
		if !d.dead {
			continue
		}
		if d.provider == "fcm" {
			s.fcm.AddRule(mock.FCMRule{Token: d.token, Answer: mock.FCMReject("UNREGISTERED")})
		} else {
			s.apns.AddRule(mock.APNsRule{Token: d.token, Answer: mock.APNsReject("BadDeviceToken")})
		}
	}
	s.start()
	s.waitConfig(camps)

	began := time.Now()
	snd := newSender(t, s.collect.URL, s.root)
	snd.run(ops(devs), start, end.Add(time.Hour))
	t.Logf("sent in %s", time.Since(began).Round(time.Second))
	s.settled(10 * time.Minute)
	t.Logf("settled in %s", time.Since(began).Round(time.Second))

	horizon := end
	got := s.decisions(horizon)
	apnsOK, apnsDead, fcmOK, fcmDead := s.providerReceipts(horizon)
	wantOK, wantDead := map[string]int{}, map[string]int{}
	byID := map[string]*device{}
	for _, d := range devs {
		byID[d.id] = d
	}
	var report []string
	var inapp []send
	for _, c := range camps {
		want := c.expect(devs, horizon)
		var wantSent, wantCtl []string
		for _, w := range want {
			if w.control {
				wantCtl = append(wantCtl, w.dev+" "+w.at.UTC().Format(time.RFC3339))
				continue
			}
			wantSent = append(wantSent, w.dev+" "+w.at.UTC().Format(time.RFC3339))
			d := byID[w.dev]
			switch {
			case c.What.Channel == "in_app":
				inapp = append(inapp, w)
			case d.token == "":
			case d.dead:
				wantDead[d.token] = 1 // the first send fails; no other is tried
			default:
				wantOK[d.token]++
			}
		}
		key := c.App + "/" + c.Name
		gotSent, gotCtl := got[key]["sent"], got[key]["control"]
		report = append(report, fmt.Sprintf("%-6s %-22s oracle %4d sent %3d control   ours %4d sent %3d control", c.App, c.Name, len(wantSent), len(wantCtl), len(gotSent), len(gotCtl)))
		if !sameSets(t, key+" sends (device time)", gotSent, wantSent) {
			s.explain(key, gotSent, wantSent)
		}
		sameSets(t, key+" control group (device, entry time)", gotCtl, wantCtl)
		if len(wantSent) < 3 {
			t.Errorf("%s: the oracle expects %d sends: the population does not exercise this example", key, len(wantSent))
		}
	}
	t.Logf("campaign recipients, ours and the oracle's (%d devices, 20 days):\n%s", len(devs), strings.Join(report, "\n"))

	// What the providers received: each live token once per send, each
	// dead token once (the first send, refused; the token is never used
	// again).
	ok := merge(apnsOK, fcmOK)
	dead := merge(apnsDead, fcmDead)
	sameCounts(t, "accepted pushes per token", ok, wantOK)
	sameCounts(t, "refused pushes per dead token", dead, wantDead)
	t.Logf("providers: %d pushes accepted (APNs %d, FCM %d), %d refused for dead tokens", total(ok), total(apnsOK), total(fcmOK), total(dead))

	s.checkInApp(inapp, devs)
	s.checkClickHouse(snd)
}

// moveOnceIntoWindow stores the one-off example again with its instant
// inside the simulated weeks, straight into the configuration topic (the
// CLI refuses an instant in the past, as it should for a real campaign).
func (s *stack) moveOnceIntoWindow(camps []*campaign) {
	for _, c := range camps {
		if c.When.Once == nil {
			continue
		}
		src := string(must(os.ReadFile(c.file)))
		re := regexp.MustCompile(`(?m)^(\s*at:\s*)` + regexp.QuoteMeta(c.When.OnceFileAt))
		if !re.MatchString(src) {
			s.t.Fatalf("%s: no line at: %s to move", c.file, c.When.OnceFileAt)
		}
		src = re.ReplaceAllString(src, "${1}"+onceAt)
		v, _ := json.Marshal(scheduler.Stored{App: c.App, Name: c.Name, File: c.file, Source: src, UpdatedAt: time.Now().UTC()})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(s.brokers, s.topic["config"]), nil)
		if err != nil {
			s.t.Fatal(err)
		}
		err = prod.Produce(ctx, []bus.Message{{Key: scheduler.CampaignKey(c.App, c.Name), Value: v}})
		prod.Close()
		if err != nil {
			s.t.Fatal(err)
		}
	}
}

// waitConfig waits until the processor serves every segment and the
// scheduler every campaign.
func (s *stack) waitConfig(camps []*campaign) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var segs struct {
			Segments []struct{ App, Name string }
		}
		var cs struct {
			Campaigns []struct{ App, Name string }
		}
		getJSON(s.t, s.process.URL+"/v1/segments", &segs)
		getJSON(s.t, s.schedule.URL+"/v1/campaigns", &cs)
		moved := true
		for _, c := range camps {
			if c.When.Once != nil {
				var one struct{ Source string }
				moved = moved && tryJSON(s.schedule.URL+"/v1/campaigns/"+c.App+"/"+c.Name, &one) && strings.Contains(one.Source, "at: "+onceAt)
			}
		}
		if len(segs.Segments) >= len(oracleSegments) && len(cs.Campaigns) >= len(camps) && moved {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("after 2 minutes the processor has %d segments (want %d), the scheduler %d campaigns (want %d; the one-off moved: %v)",
				len(segs.Segments), len(oracleSegments), len(cs.Campaigns), len(camps), moved)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// query runs SQL on ClickHouse's HTTP interface; rows of tab-separated
// fields.
func (s *stack) query(sql string) [][]string {
	s.t.Helper()
	u := "http://" + chtest.HTTPAddr(s.t) + "/?database=" + url.QueryEscape(s.db)
	resp, err := http.Post(u, "text/plain", strings.NewReader(sql+" FORMAT TabSeparated"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("ClickHouse: %s: %s\n%s", resp.Status, body, sql)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(body), "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

// decisions reads the scheduler's decisions from ClickHouse, each once:
// app/campaign → outcome (sent, control) → "device time".
func (s *stack) decisions(horizon time.Time) map[string]map[string][]string {
	out := map[string]map[string][]string{}
	rows := s.query(`SELECT app, campaign, device_id, outcome, toString(any(time), 'UTC') FROM decisions
		WHERE outcome IN ('sent', 'control') GROUP BY app, campaign, device_id, outcome, id
		HAVING any(time) <= toDateTime('` + horizon.Format("2006-01-02 15:04:05") + `', 'UTC')`)
	for _, r := range rows {
		key := r[0] + "/" + r[1]
		if out[key] == nil {
			out[key] = map[string][]string{}
		}
		at, err := time.Parse("2006-01-02 15:04:05", r[4])
		if err != nil {
			s.t.Fatalf("time %q: %v", r[4], err)
		}
		v := r[2] + " " + at.UTC().Format(time.RFC3339)
		out[key][r[3]] = append(out[key][r[3]], v)
	}
	return out
}

// providerReceipts counts what the mocks received per token: accepted, and
// refused as a dead token.
func (s *stack) providerReceipts(horizon time.Time) (apnsOK, apnsDead, fcmOK, fcmDead map[string]int) {
	apnsOK, apnsDead, fcmOK, fcmDead = map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	// The deliveries' times: sends decided after the horizon are not
	// counted (the clock went one slot past it).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := kafkabus.CountMessages(ctx, s.brokers, s.topic["deliveries"])
	if err != nil {
		s.t.Fatal(err)
	}
	msgs, err := kafkabus.ReadTopic(ctx, s.brokers, s.topic["deliveries"], int(n))
	if err != nil {
		s.t.Fatal(err)
	}
	after := map[string]bool{}
	for _, m := range msgs {
		var d scheduler.DeliveryMessage
		if err := json.Unmarshal(m.Value, &d); err != nil {
			s.t.Fatal(err)
		}
		if d.Time.After(horizon) {
			after[d.ID] = true
		}
	}
	for _, r := range s.apns.Records() {
		if after[strings.ReplaceAll(r.ApnsID, "-", "")] {
			continue
		}
		switch {
		case r.Status == 200:
			apnsOK[r.Token]++
		case r.Reason == "BadDeviceToken":
			apnsDead[r.Token]++
		default:
			s.t.Errorf("APNs answered %d %s for token %s", r.Status, r.Reason, r.Token)
		}
	}
	for _, r := range s.fcm.Records() {
		var b struct {
			Message struct {
				Token string            `json:"token"`
				Data  map[string]string `json:"data"`
			} `json:"message"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			s.t.Errorf("FCM request body: %v", err)
			continue
		}
		if after[b.Message.Data["engage_delivery_id"]] {
			continue
		}
		switch {
		case r.Status == 200:
			fcmOK[b.Message.Token]++
		case r.Status == 404:
			fcmDead[b.Message.Token]++
		default:
			s.t.Errorf("FCM answered %d for token %s", r.Status, b.Message.Token)
		}
	}
	return
}

// checkInApp asks the collector, as each app would at its next session,
// for the in-app messages of the tutorial's recipients (live until three
// days after their send, on the inbox's simulated clock: the newest
// message's time) and of as many devices that got none.
func (s *stack) checkInApp(sends []send, devs []*device) {
	if len(sends) == 0 {
		s.t.Error("no in-app sends expected: the tutorial example is not exercised")
		return
	}
	newest := sends[0].at
	for _, w := range sends {
		if w.at.After(newest) {
			newest = w.at
		}
	}
	got := map[string]bool{}
	live := 0
	for _, w := range sends {
		got[w.dev] = true
		msgs := s.inbox("news", w.dev)
		want := w.at.Add(3 * day).After(newest)
		if want {
			live++
		}
		if has := len(msgs) == 1 && msgs[0] == "tutorial_tips"; has != want {
			s.t.Errorf("in-app messages of %s (sent %s, newest %s): %v, want the tutorial: %v", w.dev, w.at, newest, msgs, want)
		}
	}
	others := 0
	for _, d := range devs {
		if d.app != "news" || got[d.id] || others >= len(sends) {
			continue
		}
		others++
		if msgs := s.inbox("news", d.id); len(msgs) != 0 {
			s.t.Errorf("in-app messages of %s, who was never sent one: %v", d.id, msgs)
		}
	}
	s.t.Logf("in-app: %d tutorial recipients, %d with the message live at the end, %d other devices with none", len(sends), live, others)
}

func (s *stack) inbox(app, dev string) []string {
	req, _ := http.NewRequest(http.MethodGet, s.collect.URL+"/v1/inapp?device="+url.QueryEscape(dev), nil)
	req.Header.Set("Authorization", "Bearer "+exampleApps[app].key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Messages []struct {
			Campaign string `json:"campaign"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		s.t.Fatalf("GET /v1/inapp for %s: %s %v", dev, resp.Status, err)
	}
	var out []string
	for _, m := range body.Messages {
		out = append(out, m.Campaign)
	}
	return out
}

// checkClickHouse: every acknowledged native record is in ClickHouse once
// (the sink and the collector exactly once end to end).
func (s *stack) checkClickHouse(snd *sender) {
	rows := s.query(`SELECT app, uniqExact(message_id) FROM tags WHERE NOT startsWith(message_id, 'token-dead-') GROUP BY app ORDER BY app`)
	n := map[string]int{}
	for _, r := range rows {
		n[r[0]], _ = strconv.Atoi(r[1])
	}
	for _, app := range []string{"news", "game", "bank", clockApp} {
		if n[app] != snd.sent[app] {
			s.t.Errorf("ClickHouse holds %d distinct records of %s, %d were acknowledged", n[app], app, snd.sent[app])
		}
	}
	if n["shop"] < snd.sent["segment"] {
		s.t.Errorf("ClickHouse holds %d records of shop, fewer than the %d Segment calls sent", n["shop"], snd.sent["segment"])
	}
	s.t.Logf("ClickHouse: distinct records per app %v; acknowledged %v", n, snd.sent)
}

// explain logs, for the first devices a campaign's sends differ on, what
// ClickHouse holds of them: their records and the campaign's decisions.
func (s *stack) explain(key string, got, want []string) {
	devs := map[string]bool{}
	for _, x := range append(append([]string{}, got...), want...) {
		devs[strings.Fields(x)[0]] = true
	}
	n := 0
	app, camp, _ := strings.Cut(key, "/")
	for _, dev := range sortedKeys(devs) {
		if slicesContains(got, dev, want) || n >= 3 {
			continue
		}
		n++
		var b strings.Builder
		for _, r := range s.query(`SELECT toString(event_time, 'UTC'), toString(received_at, 'UTC'), kind, name, message_id FROM tags FINAL WHERE app = '` + app + `' AND device_id = '` + dev + `' ORDER BY event_time LIMIT 30`) {
			fmt.Fprintf(&b, "  record %s\n", strings.Join(r, " "))
		}
		for _, r := range s.query(`SELECT toString(time, 'UTC'), outcome, reason FROM decisions FINAL WHERE app = '` + app + `' AND campaign = '` + camp + `' AND device_id = '` + dev + `' ORDER BY time`) {
			fmt.Fprintf(&b, "  decision %s\n", strings.Join(r, " "))
		}
		s.t.Logf("%s, device %s:\n%s", key, dev, b.String())
	}
}

// slicesContains reports whether dev's entries are the same in got and want.
func slicesContains(got []string, dev string, want []string) bool {
	pick := func(xs []string) string {
		var out []string
		for _, x := range xs {
			if strings.HasPrefix(x, dev+" ") {
				out = append(out, x)
			}
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	return pick(got) == pick(want)
}

func sameSets(t *testing.T, what string, got, want []string) bool {
	t.Helper()
	g, w := map[string]int{}, map[string]int{}
	for _, x := range got {
		g[x]++
	}
	for _, x := range want {
		w[x]++
	}
	var missing, extra []string
	for x, n := range w {
		if g[x] < n {
			missing = append(missing, x)
		}
	}
	for x, n := range g {
		if w[x] < n {
			extra = append(extra, x)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) > 0 {
		t.Errorf("%s: %d missing, %d not expected (or twice)\n  missing: %s\n  extra: %s", what, len(missing), len(extra), head(missing), head(extra))
		return false
	}
	return true
}

func sameCounts(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	var bad []string
	for k, n := range want {
		if got[k] != n {
			bad = append(bad, fmt.Sprintf("%s: %d, want %d", k, got[k], n))
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			bad = append(bad, fmt.Sprintf("%s: %d, want 0", k, n))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%s: %d tokens differ: %s", what, len(bad), head(bad))
	}
}

func head(xs []string) string {
	if len(xs) > 8 {
		return strings.Join(xs[:8], "; ") + fmt.Sprintf("; … (%d more)", len(xs)-8)
	}
	return strings.Join(xs, "; ")
}

func merge(a, b map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range a {
		out[k] += v
	}
	for k, v := range b {
		out[k] += v
	}
	return out
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
