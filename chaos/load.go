package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Record is one tag record of the load: an event of a device at an event
// time that depends on its index only.
type Record struct {
	ID       string
	Device   string
	Name     string // article_read or shared
	Category string // article_read's
	Premium  bool
	Network  string // shared's
	Time     time.Time
}

// RecordAt returns record i of a load over devices devices whose event
// times lie before t0: device i%devices, so that one request's records are
// of distinct devices and each device's are spread over the whole load;
// an event time a whole number of days (0 to 20, drawn from i) before t0,
// less under 30 minutes. With t0 an hour before the load starts, a window
// "in the last Nd" holds the same records from the start of the load until
// 23 hours later: the memberships of a processor that read them during the
// load and those of one that reads them minutes later must agree.
func RecordAt(i, devices int, t0 time.Time) Record {
	h := fnv.New64a()
	fmt.Fprintf(h, "chaos-%d", i)
	x := h.Sum64()
	r := Record{ID: fmt.Sprintf("c%d", i), Device: fmt.Sprintf("dev%d", i%devices)}
	days := int(x % 21)
	r.Time = t0.Add(-time.Duration(days)*24*time.Hour - time.Duration(i%1800)*time.Second).UTC().Truncate(time.Millisecond)
	if (x>>8)%5 == 0 {
		r.Name, r.Network = "shared", []string{"mail", "chat", "social"}[(x>>16)%3]
	} else {
		r.Name, r.Category, r.Premium = "article_read", []string{"sport", "politics", "tech"}[(x>>16)%3], (x>>24)%4 == 0
	}
	return r
}

// native is the record in the collector's native JSON form.
func (r Record) native() map[string]any {
	m := map[string]any{"type": "event", "deviceId": r.Device, "messageId": r.ID, "name": r.Name, "time": r.Time.Format(time.RFC3339Nano)}
	if r.Name == "shared" {
		m["extras"] = map[string]any{"network": r.Network}
	} else {
		m["extras"] = map[string]any{"category": r.Category, "premium": r.Premium, "words": 300}
	}
	return m
}

// segment is the record as a Segment track call.
func (r Record) segment() map[string]any {
	props := map[string]any{"network": r.Network}
	if r.Name != "shared" {
		props = map[string]any{"category": r.Category, "premium": r.Premium, "words": 300}
	}
	return map[string]any{"type": "track", "anonymousId": r.Device, "messageId": r.ID, "event": r.Name,
		"timestamp": r.Time.Format(time.RFC3339Nano), "properties": props}
}

// Load posts records at a steady rate to the collector: PerRequest
// records a request, every SegmentEvery-th request through Segment's
// /v1/batch, the others through the native /v1/tags. A request that gets
// no 200 (a 503 while Kafka is short of a broker, a refused connection
// while the collector is down) is sent again, the same records with the
// same message ids as an SDK does, after its Retry-After (at most 2 s) or
// 500 ms, until it is acknowledged or GiveUp has passed since the load
// ended.
type Load struct {
	URL          string
	WriteKey     string
	Rate         int // records per second offered
	PerRequest   int
	SegmentEvery int // 0: native only
	Devices      int
	T0           time.Time
	Workers      int
	GiveUp       time.Duration

	mu       sync.Mutex
	acked    map[string]Record
	attempts int
	statuses map[int]int // failed attempts by status (0: a network error)
	gaveUp   [][]Record
	offered  int
	segment  int // records offered through /v1/batch
	ran      time.Duration
	ackedAt  []time.Time // when each request was acknowledged
	slowest  time.Duration
}

// Run offers records for d at the Rate and returns once every request was
// acknowledged or given up.
func (l *Load) Run(ctx context.Context, d time.Duration) {
	l.acked, l.statuses = map[string]Record{}, map[int]int{}
	interval := time.Duration(float64(time.Second) * float64(l.PerRequest) / float64(l.Rate))
	work := make(chan []Record, 4*l.Workers)
	var wg sync.WaitGroup
	ended := make(chan struct{})
	var endedAt time.Time
	for range l.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for n := range work {
				l.send(client, n, ended, &endedAt)
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(interval)
	next, req := 0, 0
	for time.Since(start) < d && ctx.Err() == nil {
		<-tick.C
		recs := make([]Record, l.PerRequest)
		for k := range recs {
			recs[k] = RecordAt(next+k, l.Devices, l.T0)
		}
		next += l.PerRequest
		req++
		l.mu.Lock()
		l.offered += len(recs)
		if l.SegmentEvery > 0 && req%l.SegmentEvery == 0 {
			l.segment += len(recs)
		}
		l.mu.Unlock()
		work <- recs
	}
	tick.Stop()
	l.mu.Lock()
	l.ran = time.Since(start)
	endedAt = time.Now()
	l.mu.Unlock()
	close(ended)
	close(work)
	wg.Wait()
}

func (l *Load) send(client *http.Client, recs []Record, ended chan struct{}, endedAt *time.Time) {
	viaSegment := l.SegmentEvery > 0 && recs[0].index()/l.PerRequest%l.SegmentEvery == l.SegmentEvery-1
	var body []byte
	path := "/v1/tags"
	if viaSegment {
		batch := make([]map[string]any, len(recs))
		for i, r := range recs {
			batch[i] = r.segment()
		}
		body, _ = json.Marshal(map[string]any{"batch": batch})
		path = "/v1/batch"
	} else {
		native := make([]map[string]any, len(recs))
		for i, r := range recs {
			native[i] = r.native()
		}
		body, _ = json.Marshal(native)
	}
	for {
		start := time.Now()
		status, wait := l.post(client, path, body, len(recs))
		took := time.Since(start)
		l.mu.Lock()
		l.attempts++
		if status == http.StatusOK {
			for _, r := range recs {
				l.acked[r.ID] = r
			}
			l.ackedAt = append(l.ackedAt, time.Now())
			l.slowest = max(l.slowest, took)
		} else {
			l.statuses[status]++
		}
		l.mu.Unlock()
		if status == http.StatusOK {
			return
		}
		select {
		case <-ended:
			l.mu.Lock()
			over := time.Since(*endedAt) > l.GiveUp
			if over {
				l.gaveUp = append(l.gaveUp, recs)
			}
			l.mu.Unlock()
			if over {
				return
			}
		default:
		}
		time.Sleep(wait)
	}
}

// post sends one attempt and returns its status (0: a network error; -n:
// a 200 that accepted only n of the records, which this load never
// expects) and how long to wait before the next.
func (l *Load) post(client *http.Client, path string, body []byte, n int) (int, time.Duration) {
	req, _ := http.NewRequest(http.MethodPost, l.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(l.WriteKey, "")
	resp, err := client.Do(req)
	if err != nil {
		return 0, 500 * time.Millisecond
	}
	defer resp.Body.Close()
	wait := 500 * time.Millisecond
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = min(time.Duration(s)*time.Second, 2*time.Second)
	}
	var answer struct {
		Accepted int `json:"accepted"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil && resp.StatusCode == http.StatusOK {
		return -1, wait
	}
	if resp.StatusCode == http.StatusOK && answer.Accepted != n {
		return -answer.Accepted - 1, wait
	}
	return resp.StatusCode, wait
}

// index is the record's index in the load (from its id, c<i>).
func (r Record) index() int {
	i, _ := strconv.Atoi(r.ID[1:])
	return i
}

// Stats is what the load saw.
type Stats struct {
	Offered, ViaSegment, Acked, Attempts int
	Failed                               map[int]int // failed attempts by status (0: network error; negative: a partial 200)
	GaveUp                               int         // records never acknowledged
	Ran, Slowest                         time.Duration
	// LongestGap is the longest time without an acknowledged request
	// while the load ran: how long the collector's clients were held up.
	LongestGap time.Duration
}

// Stats returns the figures of a finished run.
func (l *Load) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Stats{Offered: l.offered, ViaSegment: l.segment, Acked: len(l.acked), Attempts: l.attempts, Failed: map[int]int{}, Ran: l.ran, Slowest: l.slowest}
	for k, v := range l.statuses {
		s.Failed[k] = v
	}
	for _, g := range l.gaveUp {
		s.GaveUp += len(g)
	}
	at := append([]time.Time(nil), l.ackedAt...)
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	for i := 1; i < len(at); i++ {
		s.LongestGap = max(s.LongestGap, at[i].Sub(at[i-1]))
	}
	return s
}

// Acked returns the acknowledged records by message id.
func (l *Load) Acked() map[string]Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Record, len(l.acked))
	for k, v := range l.acked {
		out[k] = v
	}
	return out
}
