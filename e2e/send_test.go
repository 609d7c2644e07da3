package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/kafkabus"
)

// op is one thing a device sends: a native record (JSON object, POST
// /v1/tags) or a call of Segment's SDK (through the Node relay).
type op struct {
	at     time.Time // on the slot grid
	app    string
	native map[string]any
	seg    *segCall
}

type segCall struct {
	Op  string         `json:"op"`
	Msg map[string]any `json:"msg"`
}

// slot is the grid every event time lies on. Within a slot every record
// has the same event time, so that the order in which the slot's requests
// reach the broker cannot make any record late on its partition: the
// processor's simulated clock, the newest event time, is the record's own.
const slot = time.Hour

// sender sends ops slot after slot, each slot's requests in parallel and
// acknowledged before the next slot starts, with a clock tick for every
// partition in each slot between first and last (but the Segment
// partition's, which its own calls move) and one after last for all.
type sender struct {
	t        *testing.T
	url      string
	relay    *relay
	clockDev []string // one device of the clock app per partition
	sent     map[string]int
	mu       sync.Mutex
	spent    map[string]time.Duration // per way of sending, summed over the slots
}

func newSender(t *testing.T, url string, root string) *sender {
	s := &sender{t: t, url: url, sent: map[string]int{}, spent: map[string]time.Duration{}}
	for p := 0; len(s.clockDev) < partitions; p++ {
		dev := fmt.Sprintf("tick-%d", p)
		if kafkabus.KeyPartition([]byte(clockApp+"/"+dev), partitions) == len(s.clockDev) {
			s.clockDev = append(s.clockDev, dev)
		}
	}
	s.relay = startRelay(t, url, filepath.Join(root, "examples", "segment-node"))
	return s
}

// segmentPartition holds the devices on Segment's SDK, and only them. The
// relay streams their calls in time order, a chunk at a time, while the
// native records go slot by slot: each partition's records arrive in time
// order, without a round trip through the SDK for every slot.
const segmentPartition = partitions - 1

// run sends every op from first to last: the native records slot by slot,
// the Segment calls alongside.
func (s *sender) run(ops []op, first, last time.Time) {
	s.t.Helper()
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].at.Before(ops[j].at) })
	var native, calls []op
	for _, o := range ops {
		if o.seg != nil {
			calls = append(calls, o)
		} else {
			native = append(native, o)
		}
	}
	segDone := make(chan error, 1)
	go func() { segDone <- s.segment(calls) }()
	i := 0
	n := 0
	for at := first; !at.After(last); at = at.Add(slot) {
		j := i
		for j < len(native) && !native[j].at.After(at) {
			if native[j].at.Before(at) {
				s.t.Fatalf("op at %s is off the grid (slot %s)", native[j].at, at)
			}
			j++
		}
		batch := append([]op(nil), native[i:j]...)
		i = j
		for p := range s.clockDev {
			if p != segmentPartition { // its clock moves with the Segment calls, which may lag behind
				batch = append(batch, s.tick(p, at))
			}
		}
		s.slot(batch)
		n += len(batch)
	}
	if i != len(native) {
		s.t.Fatalf("%d ops after the last slot %s", len(native)-i, last)
	}
	if err := <-segDone; err != nil {
		s.t.Fatal(err)
	}
	// A last tick on every partition, one slot later: every send due by
	// then fires, also those of entries that the previous slot made.
	var final []op
	for p := range s.clockDev {
		final = append(final, s.tick(p, last.Add(slot)))
	}
	s.slot(final)
	s.t.Logf("sent %d native records over %d slots and %d Segment calls: %v; time spent waiting, summed: %v", n, int(last.Sub(first)/slot)+1, len(calls), s.sent, s.spent)
}

// tick is an app-info record of partition p's clock device at at.
func (s *sender) tick(p int, at time.Time) op {
	return op{at: at, app: clockApp, native: map[string]any{"type": "app_info", "deviceId": s.clockDev[p],
		"messageId": fmt.Sprintf("tick-%d-%d", p, at.Unix()), "time": at.Format(time.RFC3339), "appInfo": map[string]any{"tick": at.Unix()}}}
}

// segment sends the Segment calls in time order, in chunks of at most 100
// (one batch of the SDK each), each acknowledged before the next.
func (s *sender) segment(calls []op) error {
	for len(calls) > 0 {
		k := min(len(calls), 100)
		chunk := make([]segOp, k)
		for i, o := range calls[:k] {
			chunk[i] = segOp{Op: o.seg.Op, WriteKey: writeKeyOf(o.app), Msg: o.seg.Msg}
		}
		began := time.Now()
		if err := s.relay.send(chunk); err != nil {
			return err
		}
		s.mu.Lock()
		s.sent["segment"] += k
		s.spent["segment"] += time.Since(began)
		s.mu.Unlock()
		calls = calls[k:]
	}
	return nil
}

// slot sends one slot's native records: a request per app, all at once;
// every record must be accepted.
func (s *sender) slot(batch []op) {
	byApp := map[string][]map[string]any{}
	for _, o := range batch {
		byApp[o.app] = append(byApp[o.app], o.native)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(byApp))
	for app, recs := range byApp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			errs <- s.post(app, recs)
			s.mu.Lock()
			s.spent["native"] += time.Since(began)
			s.mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			s.t.Fatal(err)
		}
	}
}

func writeKeyOf(app string) string {
	if app == clockApp {
		return clockKey
	}
	return exampleApps[app].key
}

// post sends records natively; every one must be accepted.
func (s *sender) post(app string, recs []map[string]any) error {
	body, _ := json.Marshal(recs)
	for try := 0; ; try++ {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/tags", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+writeKeyOf(app))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("POST /v1/tags (%s): %w", app, err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && try < 5 { // Kafka slow under load: the ids make a retry safe
			time.Sleep(time.Second)
			continue
		}
		var r struct {
			Accepted int `json:"accepted"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &r) != nil || r.Accepted != len(recs) {
			return fmt.Errorf("POST /v1/tags (%s, %d records): %s: %s", app, len(recs), resp.Status, data)
		}
		s.mu.Lock()
		s.sent[app] += len(recs)
		s.mu.Unlock()
		return nil
	}
}

// relay is the Node process that sends through Segment's SDK
// (examples/segment-node/relay.mjs).
type relay struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

type segOp struct {
	Op       string         `json:"op"`
	WriteKey string         `json:"writeKey,omitempty"`
	Msg      map[string]any `json:"msg,omitempty"`
}

func startRelay(t *testing.T, url, dir string) *relay {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@segment", "analytics-node")); err != nil {
		t.Fatalf("Segment's Node SDK is not installed in %s (make test installs it: deploy/deps.sh): %v", dir, err)
	}
	cmd := exec.Command("node", "relay.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ENGAGE_HOST="+url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("relay.mjs stderr:\n%s", stderr.String())
		}
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	return &relay{cmd: cmd, in: in, out: sc}
}

// send makes the calls, then flushes and checks that every one was sent.
func (r *relay) send(calls []segOp) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, c := range calls {
		_ = enc.Encode(c)
	}
	_ = enc.Encode(segOp{Op: "flush"})
	if _, err := r.in.Write(b.Bytes()); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if !r.out.Scan() {
		return fmt.Errorf("relay: no answer to flush: %v", r.out.Err())
	}
	var res struct {
		OK       bool           `json:"ok"`
		Sent     int            `json:"sent"`
		Failed   int            `json:"failed"`
		Statuses map[string]int `json:"statuses"`
		Errors   []string       `json:"errors"`
	}
	if err := json.Unmarshal(r.out.Bytes(), &res); err != nil {
		return fmt.Errorf("relay answer %q: %w", r.out.Text(), err)
	}
	if !res.OK || res.Sent != len(calls) {
		return fmt.Errorf("relay: %d of %d calls sent, %d failed, statuses %v, errors %s", res.Sent, len(calls), res.Failed, res.Statuses, strings.Join(res.Errors, "; "))
	}
	return nil
}
