package engine

import (
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// The dispatcher's push record token_dead says a push failed, not that the
// device was seen: a lapsed device stays lapsed, and it starts no device.
func TestTokenDeadIsNotTheDeviceSeen(t *testing.T) {
	n, err := segments.Parse(`last_seen more than 7d ago`)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{})
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments([]*segments.Segment{{App: "news", Name: "lapsed", Expr: n, Version: 1}}, t0); err != nil {
		t.Fatal(err)
	}
	e.Apply(&tag.Record{AppID: "news", DeviceID: "d1", MessageID: "m1", Kind: tag.KindSessionStart, Time: t0}, 0, t0, nil)
	t1 := t0.Add(8 * 24 * time.Hour)
	e.Advance(t1, nil)
	if !e.Member("news", "lapsed", "d1") {
		t.Fatal("d1 is not lapsed after 8 days")
	}
	dead := func(dev string, off int64) *tag.Record {
		return &tag.Record{AppID: "news", DeviceID: dev, MessageID: "token-dead-" + dev, Kind: tag.KindPush, Time: t1,
			Push: &tag.Push{Action: tag.PushTokenDead, DeliveryID: "0123456789abcdef", CampaignID: "we_miss_you"}}
	}
	if ch := e.Apply(dead("d1", 1), 1, t1, nil); len(ch) != 0 || !e.Member("news", "lapsed", "d1") {
		t.Fatalf("a token_dead record changed d1: %+v, lapsed %v", ch, e.Member("news", "lapsed", "d1"))
	}
	e.Apply(dead("d2", 2), 2, t1, nil)
	e.Advance(t1.Add(8*24*time.Hour), nil)
	if e.Member("news", "lapsed", "d2") {
		t.Fatal("a token_dead record made a device that was never seen")
	}
}
