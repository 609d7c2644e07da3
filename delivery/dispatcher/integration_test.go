package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/dispatcher"
	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

const (
	team  = "TEAM123456"
	kid   = "KEY1234567"
	topic = "com.example.game"
)

func token(i int) string { return fmt.Sprintf("%064x", i) }

func uuidOf(id string) string {
	return id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:]
}

// population is the deliveries of a run and what each must end as.
type population struct {
	first, second []bus.Message     // the second are sent after the first are done
	want          map[string]string // delivery id → the outcome it must end with ("" : accepted or unknown)
	twin          map[string]string // a second delivery to a dead token → the first
	inapp         map[string]string // in-app delivery id → device
}

// deliveries: most go through; some to tokens Apple declares dead (and,
// later, a second delivery to each: unreachable without a send), some
// refused once with 503 and Retry-After (tried again), some expired, some
// without a token, some for a provider the app has no credentials for.
func deliveries(n int, m *mock.APNs) population {
	t0 := time.Now().UTC()
	far, past := t0.Add(24*time.Hour), t0.Add(-time.Hour)
	p := population{want: map[string]string{}, twin: map[string]string{}, inapp: map[string]string{}}
	add := func(to *[]bus.Message, i int, dev, tok, provider string, exp *time.Time, want string) {
		d := scheduler.DeliveryMessage{ID: fmt.Sprintf("%032x", i), App: "game", Campaign: "stalled", Version: 1, DeviceID: dev, Occurrence: "once",
			Channel: triggers.ChannelPush, Time: t0, Expires: exp, PushToken: tok, PushProvider: provider,
			Message: scheduler.MessageJSON{Title: "Stuck?", Body: "Boosters for you.", CollapseID: "stalled"}}
		if provider == "inbox" { // an in-app message of the demo app, for the home screen
			d.App, d.Campaign, d.Channel, d.PushToken, d.PushProvider = "demo", "tutorial", triggers.ChannelInApp, "", ""
			d.Message = scheduler.MessageJSON{Title: "Swipe left", Body: "to see more", Layout: "modal", Activities: []string{"home"}}
			p.inapp[d.ID] = dev
		}
		v, _ := json.Marshal(d)
		*to = append(*to, bus.Message{Key: []byte("game/" + dev), Value: v})
		p.want[d.ID] = want
	}
	for i := 1; i <= n; i++ {
		dev := fmt.Sprintf("d%05d", i)
		switch {
		case i%50 == 0:
			m.AddRule(mock.APNsRule{Token: token(i), Answer: mock.APNsReject("BadDeviceToken")})
			add(&p.first, i, dev, token(i), "apns", &far, "failed")
			add(&p.second, n+i, dev, token(i), "apns", &far, "unreachable")
			p.twin[fmt.Sprintf("%032x", n+i)] = fmt.Sprintf("%032x", i)
		case i%37 == 0:
			m.AddRule(mock.APNsRule{Token: token(i), Answer: mock.APNsAnswer{Status: 503, Reason: "ServiceUnavailable", RetryAfter: time.Second}, Times: 1})
			add(&p.first, i, dev, token(i), "apns", &far, "")
		case i%41 == 0:
			add(&p.first, i, dev, token(i), "apns", &past, "expired")
		case i%43 == 0:
			add(&p.first, i, dev, "", "", &far, "unreachable")
		case i%47 == 0:
			add(&p.first, i, dev, token(i), "fcm", &far, "unreachable")
		case i%53 == 0:
			add(&p.first, i, dev, "", "inbox", &far, "accepted")
		default:
			add(&p.first, i, dev, token(i), "apns", &far, "")
		}
	}
	return p
}

type run struct {
	t     *testing.T
	bin   string
	cfg   dispatcher.Config
	creds string
}

func setup(t *testing.T, m *mock.APNs) *run {
	t.Helper()
	brokers := kafkatest.RealBrokers(t)
	id := fmt.Sprintf("dd%d", time.Now().UnixNano()%1e9)
	cfg := dispatcher.DefaultConfig(brokers)
	cfg.Group, cfg.Topic, cfg.ChangelogTopic, cfg.DecisionsTopic, cfg.FeedbackTopic, cfg.InboxTopic, cfg.TagsTopic = "g-"+id, id+".deliveries", id+".state", id+".decisions", id+".feedback", id+".inbox", id+".tags"
	specs := []kafkabus.TopicSpec{{Name: cfg.ChangelogTopic, Partitions: 4, ReplicationFactor: 1, Compacted: true}, {Name: cfg.InboxTopic, Partitions: 4, ReplicationFactor: 1, Compacted: true}}
	for _, n := range []string{cfg.Topic, cfg.DecisionsTopic, cfg.FeedbackTopic, cfg.TagsTopic} {
		specs = append(specs, kafkabus.TopicSpec{Name: n, Partitions: 4, ReplicationFactor: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, specs); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p8, err := m.NewKey(team, kid, topic)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"key.p8": p8, "ca.pem": m.CertificatePEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	creds := filepath.Join(dir, "credentials.yaml")
	yaml := fmt.Sprintf("apps:\n  game:\n    apns:\n      team_id: %s\n      key_id: %s\n      key_file: %s\n      topic: %s\n      host: %s\n      ca_file: %s\n",
		team, kid, filepath.Join(dir, "key.p8"), topic, m.URL(), filepath.Join(dir, "ca.pem"))
	if err := os.WriteFile(creds, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "engage")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/engage").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return &run{t: t, bin: bin, cfg: cfg, creds: creds}
}

func (r *run) start(args ...string) *exec.Cmd {
	r.t.Helper()
	c := r.cfg
	var env []string
	for len(args) > 0 && strings.HasPrefix(args[0], "ENGAGE_") {
		env, args = append(env, args[0]), args[1:]
	}
	cmd := exec.Command(r.bin, append([]string{"deliver", "-kafka.brokers", strings.Join(c.Brokers, ","), "-credentials", r.creds, "-deliver.group", c.Group,
		"-deliver.topic", c.Topic, "-deliver.changelog-topic", c.ChangelogTopic, "-deliver.decisions-topic", c.DecisionsTopic,
		"-deliver.feedback-topic", c.FeedbackTopic, "-deliver.inbox-topic", c.InboxTopic, "-deliver.tags-topic", c.TagsTopic, "-deliver.session-timeout", "6s", "-deliver.retry-base", "200ms", "-deliver.batch", "200",
		"-addr", "", "-log.level", "error"}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

func (r *run) produce(msgs []bus.Message) {
	r.t.Helper()
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(r.cfg.Brokers, r.cfg.Topic), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < len(msgs); i += 2000 {
		if err := p.Produce(context.Background(), msgs[i:min(i+2000, len(msgs))]); err != nil {
			r.t.Fatal(err)
		}
	}
}

// outcomes reads the decisions: each delivery's distinct outcomes.
func (r *run) outcomes() map[string]map[string]bool {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := kafkabus.CountMessages(ctx, r.cfg.Brokers, r.cfg.DecisionsTopic)
	if err != nil {
		r.t.Fatal(err)
	}
	msgs, err := kafkabus.ReadTopic(ctx, r.cfg.Brokers, r.cfg.DecisionsTopic, int(n))
	if err != nil {
		r.t.Fatal(err)
	}
	// Each result has its decision: the same outcome, for the same device.
	decided := map[string]bool{}
	for _, m := range msgs {
		var d scheduler.DecisionMessage
		if err := json.Unmarshal(m.Value, &d); err != nil {
			r.t.Fatal(err)
		}
		decided[d.DeviceID+"/"+string(d.Outcome)] = true
	}
	byDelivery := map[string]map[string]bool{}
	fn, err := kafkabus.CountMessages(ctx, r.cfg.Brokers, r.cfg.FeedbackTopic)
	if err != nil {
		r.t.Fatal(err)
	}
	fb, err := kafkabus.ReadTopic(ctx, r.cfg.Brokers, r.cfg.FeedbackTopic, int(fn))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, m := range fb {
		var f dispatcher.Feedback
		if err := json.Unmarshal(m.Value, &f); err != nil {
			r.t.Fatal(err)
		}
		if byDelivery[f.DeliveryID] == nil {
			byDelivery[f.DeliveryID] = map[string]bool{}
		}
		byDelivery[f.DeliveryID][string(f.Outcome)] = true
		if !decided[f.DeviceID+"/"+string(f.Outcome)] {
			r.t.Errorf("delivery %s ended %s without a decision", f.DeliveryID, f.Outcome)
		}
	}
	return byDelivery
}

func (r *run) waitDone(n int) {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lag, err := kafkabus.GroupLag(ctx, r.cfg.Brokers, r.cfg.Group, r.cfg.Topic)
		fn, err2 := kafkabus.CountMessages(ctx, r.cfg.Brokers, r.cfg.FeedbackTopic)
		cancel()
		if err == nil && err2 == nil && lag == 0 && fn >= int64(n) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not done after 3 minutes: lag %d (%v), %d results of %d", lag, err, fn, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// judge checks every delivery against the mock's log: none accepted twice,
// none lost (each has exactly one outcome), each as it must end.
func judge(t *testing.T, m *mock.APNs, p population, got map[string]map[string]bool) {
	t.Helper()
	accepted := map[string]int{} // apns-id → 200 answers
	for _, rec := range m.Records() {
		if rec.Status == 200 {
			accepted[rec.ApnsID]++
		}
	}
	counts := map[string]int{}
	bad := 0
	only := func(id string) string {
		for o := range got[id] {
			return o
		}
		return ""
	}
	for id, want := range p.want {
		outs := got[id]
		out := only(id)
		switch {
		case want == "failed" && out == "unknown":
			// In flight when the instance died: the token's death was
			// never heard.
			want = out
		case p.twin[id] != "" && only(p.twin[id]) == "unknown":
			want = "failed" // the token was not known dead: sent, and refused
		}
		counts[out]++
		n := accepted[uuidOf(id)]
		switch {
		case len(outs) != 1:
			bad++
			if bad <= 5 {
				t.Errorf("delivery %s: outcomes %v, want exactly one", id, outs)
			}
		case n > 1:
			t.Errorf("delivery %s accepted by the provider %d times", id, n)
		case want != "" && out != want:
			bad++
			if bad <= 5 {
				t.Errorf("delivery %s: %s, want %s", id, out, want)
			}
		case p.inapp[id] != "" && out != "accepted":
			t.Errorf("in-app delivery %s: %s, want accepted (in the inbox)", id, out)
		case want == "" && out != "accepted" && out != "unknown":
			t.Errorf("delivery %s: %s, want accepted (or unknown after a crash)", id, out)
		case out == "accepted" && n != 1 && p.inapp[id] == "":
			t.Errorf("delivery %s accepted, the provider has %d", id, n)
		case out != "accepted" && out != "unknown" && n != 0:
			t.Errorf("delivery %s %s, the provider accepted it %d times", id, out, n)
		}
	}
	t.Logf("%d deliveries: %v; the provider accepted %d distinct", len(p.want), counts, len(accepted))
}

// Killed with SIGKILL mid-stream, and dying exactly after the attempts are
// written and exactly after the sends, `engage deliver` sends no delivery
// twice and loses none: the mock's log is the judge.
func TestDeliverAtMostOnceAcrossCrashes(t *testing.T) {
	for _, mode := range []string{"sigkill", "after-attempts", "after-sends"} {
		t.Run(mode, func(t *testing.T) {
			m, err := mock.StartAPNs(mock.APNsConfig{Latency: 5 * time.Millisecond, KeepRecords: 100000})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			r := setup(t, m)
			p := deliveries(6000, m)
			var env []string
			if mode != "sigkill" {
				env = []string{"ENGAGE_FAULT=" + mode + ":12"}
			}
			a := r.start(env...)
			exited := make(chan struct{})
			go func() { _ = a.Wait(); close(exited) }()
			const chunks = 10
			size := (len(p.first) + chunks - 1) / chunks
			for i := range chunks {
				r.produce(p.first[i*size : min((i+1)*size, len(p.first))])
				if i == chunks*2/5 && mode == "sigkill" {
					time.Sleep(200 * time.Millisecond)
					if err := a.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			select {
			case <-exited:
			case <-time.After(time.Minute):
				t.Fatal("the first instance did not die")
			}
			before := len(m.Records())
			if before == 0 || before >= len(p.first) {
				t.Fatalf("%d sends when the first instance died: not mid-stream", before)
			}
			r.start()
			r.waitDone(len(p.first))
			r.produce(p.second)
			r.waitDone(len(p.want))
			judge(t, m, p, r.outcomes())
			r.inApp(p)
		})
	}
}

// inApp starts the collector on the run's inbox topic and checks that each
// in-app delivery is served to its device, for the screen it names only.
func (r *run) inApp(p population) {
	t := r.t
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", servicetest.FreePort(t))
	cmd := exec.Command(r.bin, "collect", "-addr", addr, "-kafka.brokers", strings.Join(r.cfg.Brokers, ","), "-collector.inbox-topic", r.cfg.InboxTopic, "-log.level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	get := func(dev, activity string) ([]string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/inapp?device="+dev+"&activity="+activity, nil)
		req.SetBasicAuth("demo-write-key", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var v struct {
			Messages []struct {
				DeliveryID string `json:"delivery_id"`
			} `json:"messages"`
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("status %d", resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			return nil, err
		}
		var ids []string
		for _, m := range v.Messages {
			ids = append(ids, m.DeliveryID)
		}
		return ids, nil
	}
	served := 0
	for id, dev := range p.inapp {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ids, err := get(dev, "home")
			if err == nil && len(ids) == 1 && ids[0] == id {
				served++
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("in-app delivery %s not served to %s: %v %v", id, dev, ids, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if ids, err := get(dev, "article"); err != nil || len(ids) != 0 {
			t.Errorf("in-app delivery for the home screen served on another: %v %v", ids, err)
		}
	}
	t.Logf("%d in-app messages served by the collector", served)
}

// An app whose key Apple refuses pauses alone: the other app's deliveries
// go on; the paused app's wait, and go once the operator gives it a good
// key (a restart with new credentials), each accepted once.
func TestAppPausedAlone(t *testing.T) {
	m, err := mock.StartAPNs(mock.APNsConfig{KeepRecords: 100000})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r := setup(t, m) // the key of team TEAM123456, used by app game
	if !m.RevokeKey(team, kid) {
		t.Fatal("revoke")
	}
	dir := filepath.Dir(r.creds)
	p8news, err := m.NewKey("NEWS123456", "NEWSKEY123", topic)
	if err != nil {
		t.Fatal(err)
	}
	writeCreds := func(gameKey []byte, gameKid string) {
		if err := os.WriteFile(filepath.Join(dir, "game.p8"), gameKey, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "news.p8"), p8news, 0o600); err != nil {
			t.Fatal(err)
		}
		apns := func(team, kid, file string) string {
			return fmt.Sprintf("    apns: {team_id: %s, key_id: %s, key_file: %s, topic: %s, host: %s, ca_file: %s}\n", team, kid, filepath.Join(dir, file), topic, m.URL(), filepath.Join(dir, "ca.pem"))
		}
		yaml := "apps:\n  game:\n" + apns(team, gameKid, "game.p8") + "  news:\n" + apns("NEWS123456", "NEWSKEY123", "news.p8")
		if err := os.WriteFile(r.creds, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old, err := os.ReadFile(filepath.Join(dir, "key.p8"))
	if err != nil {
		t.Fatal(err)
	}
	writeCreds(old, kid)
	t0 := time.Now().UTC()
	far := t0.Add(time.Hour)
	var msgs []bus.Message
	ids := map[string]string{} // delivery id → app
	for i := range 400 {
		app := []string{"game", "news"}[i%2]
		d := scheduler.DeliveryMessage{ID: fmt.Sprintf("%032x", i+1), App: app, Campaign: "c", Version: 1, DeviceID: fmt.Sprintf("d%04d", i), Occurrence: "once",
			Channel: triggers.ChannelPush, Time: t0, Expires: &far, PushToken: token(i + 1), PushProvider: "apns", Message: scheduler.MessageJSON{Title: "Hi", Body: "x"}}
		v, _ := json.Marshal(d)
		msgs = append(msgs, bus.Message{Key: []byte(app + "/" + d.DeviceID), Value: v})
		ids[d.ID] = app
	}
	accepted := func() map[string]int {
		out := map[string]int{}
		for _, rec := range m.Records() {
			if rec.Status == 200 {
				out[ids[strings.ReplaceAll(rec.ApnsID, "-", "")]]++
			}
		}
		return out
	}
	a := r.start("-deliver.auth-pause", "1s")
	r.produce(msgs)
	deadline := time.Now().Add(time.Minute)
	for accepted()["news"] < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("news not delivered while game is paused: %v", accepted())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // game tries again after its pause, and is refused again
	if got := accepted(); got["game"] != 0 || m.Stats().ByReason["InvalidProviderToken"] < 2 {
		t.Fatalf("game with a revoked key: %v accepted, %d refusals", got, m.Stats().ByReason["InvalidProviderToken"])
	}
	_ = a.Process.Signal(syscall.SIGTERM)
	_ = a.Wait()
	// The operator gives game a new key.
	p8game, err := m.NewKey(team, "GAMEKEY999", topic)
	if err != nil {
		t.Fatal(err)
	}
	writeCreds(p8game, "GAMEKEY999")
	r.start()
	deadline = time.Now().Add(time.Minute)
	for accepted()["game"] < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("game not delivered after its new key: %v", accepted())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	per := map[string]int{}
	for _, rec := range m.Records() {
		if rec.Status == 200 {
			per[rec.ApnsID]++
		}
	}
	for id, n := range per {
		if n != 1 {
			t.Errorf("%s accepted %d times", id, n)
		}
	}
	if got := accepted(); got["game"] != 200 || got["news"] != 200 {
		t.Errorf("accepted %v, want 200 each", got)
	}
}
