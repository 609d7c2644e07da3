package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/delivery/dispatcher"
	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// BenchmarkDeliverToAPNs runs engage's dispatcher (in process) against the
// real broker, 8 partitions, sending b.N deliveries already in the topic
// to the APNs mock answering after a simulated 40 ms round trip (like
// Apple's): notifications accepted per second, from the first send until
// the last is accepted, attempts and results written, offsets committed
// along the way.
func BenchmarkDeliverToAPNs(b *testing.B) {
	brokers := kafkatest.RealBrokers(b)
	m, err := mock.StartAPNs(mock.APNsConfig{Latency: 40 * time.Millisecond, KeepRecords: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	run := prepareDeliver(b, brokers, m, apnsApp{team: "TEAM123456", key: "KEY1234567", topic: "com.example.bench"}, b.N)
	b.ResetTimer()
	stop := run()
	var first time.Time
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st := m.Stats()
		if first.IsZero() && st.Requests > 0 {
			first = time.Now()
		}
		if st.Accepted >= int64(b.N) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d accepted after 10 minutes", st.Accepted, b.N)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(first)
	b.StopTimer()
	stop()
	st := m.Stats()
	if st.Accepted != int64(b.N) {
		b.Errorf("accepted %d, want %d (each once)", st.Accepted, b.N)
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "notifications/s")
	b.ReportMetric(float64(st.MaxInFlight), "max-in-flight")
	b.ReportMetric(0, "ns/op")
}

// apnsApp is an app's APNs token credentials and topic.
type apnsApp struct{ team, key, topic string }

// prepareDeliver sets up engage's dispatcher (in process) on the real
// broker, 8 partitions, with n deliveries already in its topic, sending as
// app (its key registered with the mock m) to m over the mock's TLS port.
// run starts the dispatcher and returns stop, which stops it and waits for
// it; the rest is closed at the end of the benchmark.
func prepareDeliver(b *testing.B, brokers []string, m *mock.APNs, app apnsApp, n int) (run func() (stop func())) {
	b.Helper()
	p8, err := m.NewKey(app.team, app.key, app.topic)
	if err != nil {
		b.Fatal(err)
	}
	apns, err := delivery.NewAPNs(delivery.APNsConfig{TeamID: app.team, KeyID: app.key, Key: p8, Topic: app.topic, Host: m.URL(), RootCAs: m.CertPool()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(apns.Close)
	id := fmt.Sprintf("bd%d-%d", time.Now().UnixNano()%1e9, processSeq.Add(1))
	cfg := dispatcher.DefaultConfig(brokers)
	cfg.Group, cfg.Topic, cfg.ChangelogTopic, cfg.DecisionsTopic, cfg.FeedbackTopic, cfg.InboxTopic, cfg.TagsTopic =
		"g-"+id, id+".deliveries", id+".state", id+".decisions", id+".feedback", id+".inbox", id+".tags"
	specs := []kafkabus.TopicSpec{{Name: cfg.ChangelogTopic, Partitions: 8, ReplicationFactor: 1, Compacted: true}, {Name: cfg.InboxTopic, Partitions: 8, ReplicationFactor: 1, Compacted: true}}
	for _, n := range []string{cfg.Topic, cfg.DecisionsTopic, cfg.FeedbackTopic, cfg.TagsTopic} {
		specs = append(specs, kafkabus.TopicSpec{Name: n, Partitions: 8, ReplicationFactor: 1})
	}
	if _, err := kafkabus.EnsureTopics(context.Background(), brokers, specs); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().UTC()
	keys, values := make([][]byte, n), make([][]byte, n)
	for i := range n {
		d := scheduler.DeliveryMessage{ID: fmt.Sprintf("%032x", i), App: "bench", Campaign: "promo", Version: 1, DeviceID: fmt.Sprintf("d%07d", i), Occurrence: "once",
			Channel: triggers.ChannelPush, Time: t0, PushToken: fmt.Sprintf("%064x", i), PushProvider: "apns",
			Message: scheduler.MessageJSON{Title: "20% off this week", Body: "The styles you looked at are on sale until Sunday.", Sound: "default"}}
		values[i], _ = json.Marshal(d)
		keys[i] = []byte("bench/" + d.DeviceID)
	}
	produceAll(b, brokers, cfg.Topic, values, keys)
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.DecisionsTopic), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prod.Close() })
	d, err := dispatcher.New(cfg, func(string, tag.PushProvider) (dispatcher.Sender, bool) { return apns, true }, prod, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return func() func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		return func() {
			cancel()
			<-done
		}
	}
}
