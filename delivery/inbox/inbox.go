// Package inbox holds the in-app messages waiting for each device: the
// dispatcher writes a device's whole inbox to the compacted engage.inbox
// topic (key app/device) whenever it changes, and any collector follows
// that topic into memory and answers the app's request for its messages
// (GET /v1/inapp) from there, in microseconds, for every device.
//
// A message stays until it expires (the delivery's expiry, or DefaultTTL
// after it was sent). The app shows each delivery id once and reports
// shown, clicked or dismissed through the collector (push records), which
// the statistics count.
package inbox

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultTTL is how long a message without an expiry stays in the inbox.
const DefaultTTL = 7 * 24 * time.Hour

// MaxMessages bounds a device's inbox: the oldest go first.
const MaxMessages = 50

// Message is an in-app message as the app receives it.
type Message struct {
	DeliveryID string    `json:"delivery_id"`
	Campaign   string    `json:"campaign"`
	Variant    string    `json:"variant,omitempty"`
	Title      string    `json:"title,omitempty"`
	Body       string    `json:"body,omitempty"`
	Image      string    `json:"image,omitempty"`
	DeepLink   string    `json:"deep_link,omitempty"`
	Layout     string    `json:"layout,omitempty"`
	Buttons    []Button  `json:"buttons,omitempty"`
	Activities []string  `json:"activities,omitempty"` // the screens where it may show; none: any
	Time       time.Time `json:"time"`                 // when it was sent
	Expires    time.Time `json:"expires"`
}

// Button is an in-app message's button.
type Button struct {
	Label    string `json:"label"`
	DeepLink string `json:"deep_link,omitempty"`
}

// State is a device's inbox as the topic holds it (JSON).
type State struct {
	Messages []Message `json:"messages"`
}

// Add returns the messages with m added (once per delivery id), those
// expired at now removed, at most MaxMessages (the newest).
func Add(msgs []Message, m Message, now time.Time) []Message {
	out := Live(msgs, now)
	if !slices.ContainsFunc(out, func(x Message) bool { return x.DeliveryID == m.DeliveryID }) && m.Expires.After(now) {
		out = append(out, m)
	}
	if len(out) > MaxMessages {
		out = out[len(out)-MaxMessages:]
	}
	return out
}

// Live returns the messages not expired at now (a new slice).
func Live(msgs []Message, now time.Time) []Message {
	out := make([]Message, 0, len(msgs)+1)
	for _, m := range msgs {
		if m.Expires.After(now) {
			out = append(out, m)
		}
	}
	return out
}

// Encode is a device's inbox as the topic holds it; nil (a tombstone) when
// empty.
func Encode(msgs []Message) []byte {
	if len(msgs) == 0 {
		return nil
	}
	b, _ := json.Marshal(State{Messages: msgs})
	return b
}

// Decode reads a device's inbox from the topic.
func Decode(b []byte) ([]Message, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("inbox record: %w", err)
	}
	return s.Messages, nil
}

// Store is every device's inbox, as followed from the topic. Safe for
// concurrent use.
type Store struct {
	mu   sync.RWMutex
	devs map[string][]Message // app/device
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{devs: map[string][]Message{}} }

// Apply applies one record of the topic (key app/device).
func (s *Store) Apply(key, value []byte) error {
	msgs, err := Decode(value)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(msgs) == 0 {
		delete(s.devs, string(key))
		return nil
	}
	s.devs[string(key)] = msgs
	return nil
}

// Get returns a device's messages that may show now on activity (""
// : any screen), oldest first.
func (s *Store) Get(app, device, activity string, now time.Time) []Message {
	s.mu.RLock()
	msgs := s.devs[app+"/"+device]
	s.mu.RUnlock()
	out := []Message{}
	for _, m := range msgs {
		if !m.Expires.After(now) {
			continue
		}
		if activity != "" && len(m.Activities) > 0 && !slices.ContainsFunc(m.Activities, func(a string) bool { return strings.EqualFold(a, activity) }) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// Devices returns how many devices have messages.
func (s *Store) Devices() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.devs)
}
