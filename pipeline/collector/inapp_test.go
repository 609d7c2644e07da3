package collector_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/inbox"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
)

// GET /v1/inapp answers a device's in-app messages from the inbox the
// collector follows: those of the write key's app, not expired, for the
// screen asked (or any); a request without a device or with a bad key is
// refused; a collector without an inbox says so.
func TestInApp(t *testing.T) {
	apps, err := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{key}}, &collector.App{ID: "shop", WriteKeys: []string{enforceKey}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := collector.New(collector.DefaultConfig(), apps, bus.NewMemory("tags", 1), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path, writeKey string) (int, []inbox.Message) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if writeKey != "" {
			req.SetBasicAuth(writeKey, "")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var v struct {
			Messages []inbox.Message `json:"messages"`
		}
		_ = json.Unmarshal(data, &v)
		return resp.StatusCode, v.Messages
	}
	if code, _ := get("/v1/inapp?device=ana", key); code != http.StatusNotFound {
		t.Errorf("without an inbox: %d", code)
	}

	store := inbox.NewStore()
	s.SetInbox(store)
	now := time.Now()
	msgs := []inbox.Message{
		{DeliveryID: "d1", Campaign: "tutorial", Title: "Swipe left", Layout: "modal", Activities: []string{"home"}, Time: now.Add(-time.Hour), Expires: now.Add(time.Hour)},
		{DeliveryID: "d2", Campaign: "promo", Title: "20% off", Time: now.Add(-time.Hour), Expires: now.Add(time.Hour)},
		{DeliveryID: "d3", Campaign: "old", Title: "gone", Time: now.Add(-48 * time.Hour), Expires: now.Add(-time.Minute)},
	}
	if err := store.Apply([]byte("news/ana"), inbox.Encode(msgs)); err != nil {
		t.Fatal(err)
	}
	if err := store.Apply([]byte("shop/ana"), inbox.Encode(msgs[1:2])); err != nil {
		t.Fatal(err)
	}
	ids := func(ms []inbox.Message) (out []string) {
		for _, m := range ms {
			out = append(out, m.DeliveryID)
		}
		return out
	}
	for _, c := range []struct {
		path, key string
		code      int
		want      []string
	}{
		{"/v1/inapp?device=ana", key, 200, []string{"d1", "d2"}},
		{"/v1/inapp?device=ana&activity=home", key, 200, []string{"d1", "d2"}},
		{"/v1/inapp?device=ana&activity=article", key, 200, []string{"d2"}},
		{"/v1/inapp?device=ana", enforceKey, 200, []string{"d2"}},
		{"/v1/inapp?device=bo", key, 200, nil},
		{"/v1/inapp", key, 400, nil},
		{"/v1/inapp?device=ana", "", 401, nil},
		{"/v1/inapp?device=ana", "not-a-key", 401, nil},
	} {
		code, got := get(c.path, c.key)
		if code != c.code || len(ids(got)) != len(c.want) || (len(c.want) > 0 && ids(got)[0] != c.want[0]) {
			t.Errorf("%s (key %q): %d %v, want %d %v", c.path, c.key, code, ids(got), c.code, c.want)
		}
	}
	// A tombstone empties the inbox.
	if err := store.Apply([]byte("news/ana"), nil); err != nil {
		t.Fatal(err)
	}
	if _, got := get("/v1/inapp?device=ana", key); len(got) != 0 {
		t.Errorf("after the tombstone: %v", ids(got))
	}
}
