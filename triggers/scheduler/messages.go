package scheduler

import (
	"time"

	"github.com/openengage/engage/triggers"
)

// DeliveryMessage is a send as engage.deliveries carries it (JSON; key
// app/device, co-partitioned with the tags): the dispatcher delivers it.
// Its id is the same whenever the same send is decided again (campaign,
// version, device, occurrence), so that a consumer deduplicates on it.
type DeliveryMessage struct {
	ID         string           `json:"id"`
	App        string           `json:"app"`
	Campaign   string           `json:"campaign"`
	Version    int64            `json:"version"`
	DeviceID   string           `json:"device_id"`
	Occurrence string           `json:"occurrence"`
	Variant    string           `json:"variant,omitempty"`
	Channel    triggers.Channel `json:"channel"`
	Locale     string           `json:"locale,omitempty"`
	Time       time.Time        `json:"time"`              // when it was decided to send
	Expires    *time.Time       `json:"expires,omitempty"` // absent: no expiry
	// The device's newest push token and its provider (apns,
	// apns-sandbox, fcm), for push and data; absent when it sent none.
	PushToken    string      `json:"push_token,omitempty"`
	PushProvider string      `json:"push_provider,omitempty"`
	Message      MessageJSON `json:"message"`
}

// MessageJSON is a message's content for one device, rendered.
type MessageJSON struct {
	Title      string            `json:"title,omitempty"`
	Body       string            `json:"body,omitempty"`
	Sound      string            `json:"sound,omitempty"`
	Badge      *int              `json:"badge,omitempty"`
	Image      string            `json:"image,omitempty"`
	DeepLink   string            `json:"deep_link,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	CollapseID string            `json:"collapse_id,omitempty"`
	Priority   string            `json:"priority,omitempty"`
	TTLSeconds int64             `json:"ttl_seconds,omitempty"`
	Layout     string            `json:"layout,omitempty"`
	Buttons    []ButtonJSON      `json:"buttons,omitempty"`
	Activities []string          `json:"activities,omitempty"`
}

// ButtonJSON is an in-app message's button.
type ButtonJSON struct {
	Label    string `json:"label"`
	DeepLink string `json:"deep_link,omitempty"`
}

// DecisionMessage is one decision as engage.decisions carries it (JSON;
// key app/device): what was decided for a device and a send opportunity,
// and why. The ClickHouse decisions table holds them.
type DecisionMessage struct {
	ID         string           `json:"id"`
	App        string           `json:"app"`
	Campaign   string           `json:"campaign"`
	Version    int64            `json:"version"`
	DeviceID   string           `json:"device_id"`
	Occurrence string           `json:"occurrence"`
	Outcome    triggers.Outcome `json:"outcome"`
	Reason     string           `json:"reason"`
	Time       time.Time        `json:"time"`              // when it was decided
	SendAt     *time.Time       `json:"send_at,omitempty"` // deferred: when it is due
	Variant    string           `json:"variant,omitempty"`
}

// FromDelivery is the message of a delivery.
func FromDelivery(d *triggers.Delivery) DeliveryMessage {
	m := d.Message
	out := DeliveryMessage{ID: d.ID, App: d.App, Campaign: d.Campaign, Version: d.Version, DeviceID: d.DeviceID, Occurrence: d.Occurrence,
		Variant: d.Variant, Channel: d.Channel, Locale: d.Locale, Time: d.Time.UTC(), PushToken: d.PushToken, PushProvider: string(d.PushProvider),
		Message: MessageJSON{Title: m.Title, Body: m.Body, Sound: m.Sound, Badge: m.Badge, Image: m.Image, DeepLink: m.DeepLink, Data: m.Data,
			CollapseID: m.CollapseID, Priority: string(m.Priority), TTLSeconds: int64(m.TTL / time.Second), Layout: string(m.Layout), Activities: m.Activities}}
	if !d.Expires.IsZero() {
		t := d.Expires.UTC()
		out.Expires = &t
	}
	for _, b := range m.Buttons {
		out.Message.Buttons = append(out.Message.Buttons, ButtonJSON{Label: b.Label, DeepLink: b.DeepLink})
	}
	return out
}

// FromDecision is the message of a decision.
func FromDecision(d *triggers.Decision) DecisionMessage {
	out := DecisionMessage{ID: d.ID, App: d.App, Campaign: d.Campaign, Version: d.Version, DeviceID: d.DeviceID, Occurrence: d.Occurrence,
		Outcome: d.Outcome, Reason: d.Reason, Time: d.Time.UTC(), Variant: d.Variant}
	if !d.SendAt.IsZero() {
		t := d.SendAt.UTC()
		out.SendAt = &t
	}
	return out
}
