package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tagplan"
)

const benchKey = "bench-write-key"

const benchPlan = `
app: bench
mode: warn
activities: {home: {}, article: {extras: {category: string}}}
events:
  article_read: {extras: {category: string, words: number, premium: bool}}
  shared: {extras: {network: string}}
`

// batchBody returns a JSON array of n typical records spread over devices.
func batchBody(seed, n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	now := time.Now().UTC()
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		d := (seed*n + i) % 100000
		ts := now.Add(-time.Duration(n-i) * time.Second).Format(time.RFC3339Nano)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, `{"type":"activity_start","deviceId":"device-%06d","session":"s-%d","name":"article","extras":{"category":"sport"},"time":%q}`, d, seed, ts)
		case 3:
			fmt.Fprintf(&b, `{"type":"event","deviceId":"device-%06d","name":"shared","activity":"article","extras":{"network":"mastodon"},"time":%q}`, d, ts)
		default:
			fmt.Fprintf(&b, `{"type":"event","deviceId":"device-%06d","userId":"user-%06d","name":"article_read","activity":"article","extras":{"category":"sport","words":%d,"premium":false},"time":%q}`, d, d, 300+i, ts)
		}
	}
	b.WriteByte(']')
	return b.Bytes()
}

// BenchmarkCollectorToKafka: HTTP batches of 100 events, posted by
// concurrent clients over loopback, answered only after the real Kafka
// broker acknowledged them (acks=all). Reports events/s.
func BenchmarkCollectorToKafka(b *testing.B) {
	brokers := kafkatest.RealBrokers(b)
	topic := kafkatest.NewTopic(b, brokers, 8)
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	plan, err := tagplan.Parse("bench.yaml", []byte(benchPlan))
	if err != nil {
		b.Fatal(err)
	}
	apps, err := collector.NewApps(&collector.App{ID: "bench", WriteKeys: []string{benchKey}, Plan: plan})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := collector.New(collector.DefaultConfig(), apps, prod, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/v1/tags"

	const perBatch, clients = 100, 64
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = batchBody(i, perBatch)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	post := func(body []byte) error {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(benchKey, "")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := post(bodies[0]); err != nil { // warm up connections and metadata
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	n := int64(b.N)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				if err := post(bodies[i%int64(len(bodies))]); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d requests failed", f, n)
	}
	b.ReportMetric(float64(n*perBatch)/elapsed.Seconds(), "events/s")
	// Everything acknowledged is in the topic (plus the warm-up batch).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	count, err := kafkabus.CountMessages(ctx, brokers, topic)
	if err != nil {
		b.Fatal(err)
	}
	if want := (n + 1) * perBatch; count != want {
		b.Fatalf("topic holds %d records, the collector acknowledged %d", count, want)
	}
	b.ReportMetric(0, "ns/op")
}
