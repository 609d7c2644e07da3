package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

const topic = "com.example.game"

func token(i int) string { return fmt.Sprintf("%064x", i) }

func pushDelivery(i int, provider string) *scheduler.DeliveryMessage {
	badge := 2
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	exp := t0.Add(6 * time.Hour)
	return &scheduler.DeliveryMessage{ID: fmt.Sprintf("%032x", i), App: "game", Campaign: "stalled", Version: 3, DeviceID: fmt.Sprintf("d%d", i),
		Occurrence: "once", Channel: triggers.ChannelPush, Time: t0, Expires: &exp, PushToken: token(i), PushProvider: provider,
		Message: scheduler.MessageJSON{Title: "Stuck on level 12?", Body: "Three boosters.", Sound: "default", Badge: &badge, Image: "https://cdn.example.com/b.png",
			DeepLink: "game://bonus", Data: map[string]string{"offer": "boosters_3"}, CollapseID: "stalled", Priority: "high"}}
}

func newAPNs(t *testing.T) (*mock.APNs, *delivery.APNs, []byte) {
	t.Helper()
	// The rule below answers ExpiredProviderToken to a fresh provider
	// token; the new one the sender makes at once would otherwise be
	// refused as TooManyProviderTokenUpdates (Apple: at most one new token
	// in 20 minutes per connection, and a token lasts an hour).
	m, err := mock.StartAPNs(mock.APNsConfig{TokenUpdateInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	p8, err := m.NewKey("TEAM123456", "KEY1234567", topic)
	if err != nil {
		t.Fatal(err)
	}
	s, err := delivery.NewAPNs(delivery.APNsConfig{TeamID: "TEAM123456", KeyID: "KEY1234567", Key: p8, Topic: topic, Host: m.URL(), RootCAs: m.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return m, s, p8
}

// A push reaches the APNs mock in Apple's documented shape: the alert,
// sound, badge and mutable-content under aps, the custom data at the top,
// the headers (push type, priority, expiration, collapse id, topic, the
// delivery id as apns-id).
func TestAPNsPayload(t *testing.T) {
	m, s, _ := newAPNs(t)
	d := pushDelivery(1, "apns")
	r := s.Send(context.Background(), d)
	if r.Kind != delivery.Sent || r.ProviderID != "00000000-0000-0000-0000-000000000001" {
		t.Fatalf("send: %+v", r)
	}
	recs := m.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	rec := recs[0]
	var payload map[string]any
	if err := json.Unmarshal(rec.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	aps := payload["aps"].(map[string]any)
	alert := aps["alert"].(map[string]any)
	if alert["title"] != "Stuck on level 12?" || alert["body"] != "Three boosters." || aps["sound"] != "default" || aps["badge"] != 2.0 || aps["mutable-content"] != 1.0 {
		t.Errorf("aps: %v", aps)
	}
	if payload["offer"] != "boosters_3" || payload["engage"].(map[string]any)["deep_link"] != "game://bonus" || payload["engage"].(map[string]any)["delivery_id"] != d.ID {
		t.Errorf("custom data: %v", payload)
	}
	h := rec.Header
	for k, want := range map[string]string{"apns-push-type": "alert", "apns-priority": "10", "apns-topic": topic, "apns-collapse-id": "stalled",
		"apns-expiration": fmt.Sprint(d.Expires.Unix()), "apns-id": "00000000-0000-0000-0000-000000000001"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	// A data push: background, priority 5, content-available alone.
	d = pushDelivery(2, "apns")
	d.Channel = triggers.ChannelData
	if r := s.Send(context.Background(), d); r.Kind != delivery.Sent {
		t.Fatalf("data push: %+v", r)
	}
	rec = m.Records()[1]
	if rec.Header.Get("apns-push-type") != "background" || rec.Header.Get("apns-priority") != "5" || !strings.Contains(string(rec.Payload), `"aps":{"content-available":1}`) {
		t.Errorf("data push: %s %s", rec.Header, rec.Payload)
	}
}

// Each of Apple's answers takes its path.
func TestAPNsClassification(t *testing.T) {
	m, s, _ := newAPNs(t)
	for i, c := range []struct {
		answer mock.APNsAnswer
		want   delivery.Kind
	}{
		{mock.APNsReject("BadDeviceToken"), delivery.TokenDead},
		{mock.APNsReject("DeviceTokenNotForTopic"), delivery.TokenDead},
		{mock.APNsReject("Unregistered"), delivery.TokenDead},
		{mock.APNsReject("ExpiredToken"), delivery.TokenDead},
		{mock.APNsAnswer{Status: 429, Reason: "TooManyRequests", RetryAfter: 7 * time.Second}, delivery.Retry},
		{mock.APNsReject("InternalServerError"), delivery.Retry},
		{mock.APNsAnswer{Status: 503, Reason: "ServiceUnavailable", RetryAfter: 30 * time.Second}, delivery.Retry},
		{mock.APNsReject("InvalidProviderToken"), delivery.AuthFailed},
		{mock.APNsReject("PayloadTooLarge"), delivery.Refused},
		{mock.APNsReject("BadCollapseId"), delivery.Refused},
	} {
		tok := token(100 + i)
		m.AddRule(mock.APNsRule{Token: tok, Answer: c.answer})
		d := pushDelivery(100+i, "apns")
		r := s.Send(context.Background(), d)
		if r.Kind != c.want || r.Reason != c.answer.Reason || r.RetryAfter != c.answer.RetryAfter {
			t.Errorf("%s: %+v, want %s with retry-after %s", c.answer.Reason, r, c.want, c.answer.RetryAfter)
		}
	}
	// ExpiredProviderToken once: a new provider token, and it goes.
	m.AddRule(mock.APNsRule{Token: token(200), Answer: mock.APNsReject("ExpiredProviderToken"), Times: 1})
	if r := s.Send(context.Background(), pushDelivery(200, "apns")); r.Kind != delivery.Sent {
		t.Errorf("after ExpiredProviderToken once: %+v", r)
	}
	// A revoked key: the app's credentials fail.
	m.RevokeKey("TEAM123456", "KEY1234567")
	if r := s.Send(context.Background(), pushDelivery(201, "apns")); r.Kind != delivery.AuthFailed || r.Reason != "InvalidProviderToken" {
		t.Errorf("revoked key: %+v", r)
	}
	// No answer at all: retry.
	m.Close()
	if r := s.Send(context.Background(), pushDelivery(202, "apns")); r.Kind != delivery.Retry || !strings.HasPrefix(r.Reason, "network: ") {
		t.Errorf("server gone: %+v", r)
	}
}

func newFCM(t *testing.T) (*mock.FCM, *delivery.FCM) {
	t.Helper()
	m, err := mock.StartFCM(mock.FCMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	sa, err := m.NewServiceAccount("game-project")
	if err != nil {
		t.Fatal(err)
	}
	s, err := delivery.NewFCM(context.Background(), delivery.FCMConfig{ServiceAccount: sa, ProjectID: "game-project", Endpoint: m.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// A push reaches the FCM mock as an HTTP v1 message: notification, data
// with the delivery id, Android collapse key, priority and TTL.
func TestFCMPayload(t *testing.T) {
	m, s := newFCM(t)
	d := pushDelivery(1, "fcm")
	r := s.Send(context.Background(), d)
	if r.Kind != delivery.Sent || !strings.HasPrefix(r.ProviderID, "projects/game-project/messages/") {
		t.Fatalf("send: %+v", r)
	}
	recs := m.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	var body struct {
		Message struct {
			Token        string            `json:"token"`
			Data         map[string]string `json:"data"`
			Notification map[string]string `json:"notification"`
			Android      map[string]any    `json:"android"`
			APNS         struct {
				Headers map[string]string `json:"headers"`
				Payload struct {
					Aps map[string]any `json:"aps"`
				} `json:"payload"`
			} `json:"apns"`
			Webpush struct {
				Notification map[string]any `json:"notification"`
			} `json:"webpush"`
		} `json:"message"`
	}
	if err := json.Unmarshal(recs[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	msg := body.Message
	if msg.Token != d.PushToken || msg.Notification["title"] != "Stuck on level 12?" || msg.Notification["image"] != d.Message.Image ||
		msg.Data["engage_delivery_id"] != d.ID || msg.Data["offer"] != "boosters_3" || msg.Data["engage_deep_link"] != "game://bonus" {
		t.Errorf("message: %+v", msg)
	}
	if msg.Android["collapse_key"] != "stalled" || msg.Android["priority"] != "high" || msg.Android["ttl"] != "21600s" {
		t.Errorf("android: %v", msg.Android)
	}
	if h := msg.APNS.Headers; h["apns-priority"] != "10" || h["apns-collapse-id"] != "stalled" {
		t.Errorf("apns headers: %v", h)
	}
	if aps := msg.APNS.Payload.Aps; aps["sound"] != "default" || aps["badge"] != 2.0 || aps["mutable-content"] != 1.0 {
		t.Errorf("apns aps: %v", aps)
	}
	if n := msg.Webpush.Notification; n["title"] != "Stuck on level 12?" || n["image"] != d.Message.Image {
		t.Errorf("webpush: %v", n)
	}
}

// Each of Google's answers takes its path.
func TestFCMClassification(t *testing.T) {
	m, s := newFCM(t)
	for i, c := range []struct {
		answer mock.FCMAnswer
		want   delivery.Kind
		reason string
	}{
		{mock.FCMReject(mock.FCMUnregistered), delivery.TokenDead, "UNREGISTERED"},
		{mock.FCMReject(mock.FCMSenderIDMismatch), delivery.TokenDead, "SENDER_ID_MISMATCH"},
		{mock.FCMReject(mock.FCMInvalidArgument), delivery.TokenDead, "INVALID_ARGUMENT"},
		{mock.FCMAnswer{Code: mock.FCMInvalidArgument, Message: "Message.data must not contain reserved key"}, delivery.Refused, "INVALID_ARGUMENT"},
		{mock.FCMAnswer{Code: mock.FCMQuotaExceeded, RetryAfter: 12 * time.Second}, delivery.Retry, "QUOTA_EXCEEDED"},
		{mock.FCMAnswer{ProjectQuota: true, RetryAfter: 60 * time.Second}, delivery.Retry, "RESOURCE_EXHAUSTED"},
		{mock.FCMReject(mock.FCMUnavailable), delivery.Retry, "UNAVAILABLE"},
		{mock.FCMReject(mock.FCMInternal), delivery.Retry, "INTERNAL"},
		{mock.FCMReject(mock.FCMThirdPartyAuthError), delivery.AuthFailed, "THIRD_PARTY_AUTH_ERROR"},
	} {
		tok := token(300 + i)
		// The firebase client retries 503 and 500 itself: answer them
		// every time, so that its retries end in the error.
		m.AddRule(mock.FCMRule{Token: tok, Answer: c.answer})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r := s.Send(ctx, pushDelivery(300+i, "fcm"))
		cancel()
		if r.Kind != c.want || r.Reason != c.reason || r.RetryAfter != c.answer.RetryAfter {
			t.Errorf("%s %q: %+v, want %s %s with retry-after %s", c.answer.Code, c.answer.Message, r, c.want, c.reason, c.answer.RetryAfter)
		}
	}
	_ = http.StatusOK
}
