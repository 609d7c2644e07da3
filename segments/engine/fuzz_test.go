package engine

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// FuzzRestore feeds arbitrary changelog records to Restore: it must fail
// cleanly (wrapping ErrCorruptState) or restore a state that encodes back
// to the same bytes, and the engine must keep working.
func FuzzRestore(f *testing.F) {
	segs := fuzzSegments(f)
	e := New(Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments(segs, t0); err != nil {
		f.Fatal(err)
	}
	recs := []*tag.Record{
		{Kind: tag.KindSessionStart, DeviceID: "d1"},
		{Kind: tag.KindEvent, Name: "share", DeviceID: "d1", Extras: []tag.Extra{{Key: "network", Value: tag.String("facebook")}}},
		{Kind: tag.KindAppInfo, DeviceID: "d1", AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(3)}, {Key: "topic", Value: tag.String("sport")}}},
		{Kind: tag.KindDevice, DeviceID: "d1", Device: &tag.DeviceInfo{Platform: "ios", AppVersion: "2.1"}},
		{Kind: tag.KindAppInfo, DeviceID: "d1", AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(2.5)}, {Key: "vip", Value: tag.Bool(true)}}},
	}
	for i, r := range recs {
		r.AppID, r.MessageID, r.Time = "app", string(rune('a'+i)), t0.Add(time.Duration(i)*time.Hour)
		e.Apply(r, int64(i), r.Time, nil)
	}
	e.Snapshot(func(k, st []byte) { f.Add(append([]byte(nil), k...), append([]byte(nil), st...)) })
	f.Add([]byte("app/d2"), []byte{stateVersion})
	f.Add([]byte("\x00app"), []byte{metaVersion, 0, 0, 0})
	f.Fuzz(func(t *testing.T, key, state []byte) {
		e := New(Options{})
		if _, _, err := e.SetSegments(segs, t0); err != nil {
			t.Fatal(err)
		}
		err := e.Restore(key, state)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error %v does not wrap ErrCorruptState", err)
			}
			return
		}
		if len(key) > 0 && key[0] != 0 && state != nil {
			// What a state restores to encodes stably: restoring its
			// encoding gives the same encoding.
			once := snapshotOf(e, key)
			e2 := New(Options{})
			if _, _, err := e2.SetSegments(segs, t0); err != nil {
				t.Fatal(err)
			}
			if err := e2.Restore(key, once); err != nil {
				t.Fatalf("restoring an encoded state: %v", err)
			}
			if twice := snapshotOf(e2, key); !bytes.Equal(once, twice) {
				t.Fatalf("state %x encodes as %x, then as %x", state, once, twice)
			}
		}
		// The engine keeps working.
		r := &tag.Record{Kind: tag.KindEvent, Name: "share", AppID: "app", DeviceID: "d1", MessageID: "z", Time: t0.Add(24 * time.Hour)}
		e.Apply(r, 1<<40, r.Time, nil)
		e.Advance(t0.Add(60*24*time.Hour), nil)
		e.Dirty(func(k, st []byte) {})
	})
}

func fuzzSegments(tb testing.TB) []*segments.Segment {
	var segs []*segments.Segment
	for i, text := range []string{
		`did event "share" where network = "facebook" at least 2 times in the last 7d`,
		`first_session within 1d and last_seen within 2d`,
		`app_info "level" unchanged for 1d and app_info "topic" = "sport"`,
		`platform = "ios" and app_version >= "2.0"`,
		`segment "s0" or sample 50%`,
	} {
		n, err := segments.Parse(text)
		if err != nil {
			tb.Fatal(err)
		}
		segs = append(segs, &segments.Segment{App: "app", Name: "s" + string(rune('0'+i)), Expr: n, Version: 1})
	}
	return segs
}

func snapshotOf(e *Engine, key []byte) []byte {
	var out []byte
	e.Snapshot(func(k, st []byte) {
		if bytes.Equal(k, key) {
			out = append([]byte(nil), st...)
		}
	})
	return out
}
