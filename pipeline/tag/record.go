package tag

import (
	"fmt"
	"time"
)

// Kind is what a record says happened.
type Kind uint8

// The record kinds. Their numeric values are part of the binary encoding:
// append new kinds, never renumber.
const (
	KindInvalid       Kind = iota
	KindSessionStart       // a session began
	KindSessionEnd         // a session ended (Duration may be set)
	KindActivityStart      // a screen became the current activity
	KindActivityEnd        // the current activity ended (Duration may be set)
	KindEvent              // an action, optionally within an activity
	KindJobStart           // a job (an action with a duration) started
	KindJobEnd             // a job ended (Duration may be set)
	KindJob                // a whole job in one record, with its Duration
	KindError              // a named problem (e.g. connection failure)
	KindCrash              // an uncaught failure
	KindAppInfo            // typed per-user attributes; only the latest value counts
	KindDevice             // device info: platform, versions, locale, push token
	KindPush               // push feedback from the device
	kindCount
)

var kindNames = [...]string{
	KindInvalid:       "invalid",
	KindSessionStart:  "session_start",
	KindSessionEnd:    "session_end",
	KindActivityStart: "activity_start",
	KindActivityEnd:   "activity_end",
	KindEvent:         "event",
	KindJobStart:      "job_start",
	KindJobEnd:        "job_end",
	KindJob:           "job",
	KindError:         "error",
	KindCrash:         "crash",
	KindAppInfo:       "app_info",
	KindDevice:        "device",
	KindPush:          "push",
}

// String returns the kind's name as it appears in the JSON form.
func (k Kind) String() string {
	if k < kindCount {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, bool) {
	for k := KindSessionStart; k < kindCount; k++ {
		if kindNames[k] == s {
			return k, true
		}
	}
	return KindInvalid, false
}

// Kinds returns every valid kind, in order.
func Kinds() []Kind {
	ks := make([]Kind, 0, kindCount-1)
	for k := KindSessionStart; k < kindCount; k++ {
		ks = append(ks, k)
	}
	return ks
}

// Named reports whether records of this kind carry a Name (activity, event,
// job, error or crash name).
func (k Kind) Named() bool {
	switch k {
	case KindActivityStart, KindActivityEnd, KindEvent, KindJobStart, KindJobEnd, KindJob, KindError, KindCrash:
		return true
	}
	return false
}

// Record is one tag record. Records are values: the collector builds them,
// the codec carries them through Kafka, the processors and sinks read them.
type Record struct {
	Kind      Kind
	AppID     string // set by the collector from the write key
	DeviceID  string // required
	UserID    string // optional: the app's own user id
	MessageID string // client's id, or generated from the content (see GenerateID)

	Time       time.Time // event time, corrected for client clock skew
	SentAt     time.Time // when the client sent the batch (client clock); zero if unknown
	ReceivedAt time.Time // when the collector received it (server clock)

	AppVersion string // the app version that sent the record, if known

	SessionID string        // optional session the record belongs to
	Name      string        // activity, event, job, error or crash name
	Activity  string        // for events, errors, jobs: the current activity, if any
	JobID     string        // pairs a job_start with its job_end when a name repeats
	Duration  time.Duration // session_end, activity_end, job_end, job

	Extras  []Extra // typed key/values, sorted by key, keys unique
	AppInfo []Extra // KindAppInfo: typed attributes, sorted by key

	Device *DeviceInfo // KindDevice
	Push   *Push       // KindPush

	// Unplanned lists what the app's tag plan did not declare ("event:foo",
	// "extra:bar"), when the plan is in warn mode. Kept for the coverage
	// report.
	Unplanned []string
}

// DeviceInfo describes the device and how to reach it.
type DeviceInfo struct {
	Platform     string // ios, android, web, windows, macos, other
	AppVersion   string
	AppBuild     string
	OSVersion    string
	Model        string
	Manufacturer string
	Locale       string // BCP 47, e.g. fr-FR
	TimeZone     string // IANA, e.g. Europe/Paris
	Country      string // ISO 3166-1 alpha-2, upper case
	PushToken    string
	PushProvider PushProvider // required when PushToken is set
}

// PushProvider names the service that delivers to a push token.
type PushProvider string

// The push providers.
const (
	ProviderNone        PushProvider = ""
	ProviderAPNs        PushProvider = "apns"
	ProviderAPNsSandbox PushProvider = "apns-sandbox"
	ProviderFCM         PushProvider = "fcm"
)

// Push is feedback from the device about a push it was sent.
type Push struct {
	Action     PushAction
	DeliveryID string // the id the dispatcher gave the delivery
	CampaignID string
}

// PushAction is what happened to a push on the device.
type PushAction string

// The push actions.
const (
	PushReceived  PushAction = "received"
	PushOpened    PushAction = "opened"
	PushClicked   PushAction = "clicked"
	PushDismissed PushAction = "dismissed"
	PushShown     PushAction = "shown" // an in-app message was shown
	// PushTokenDead is written by the dispatcher, never sent by a device
	// (the collector refuses it): the provider declared dead the push token
	// the device had when the delivery (DeliveryID) was decided, at the
	// record's Time.
	PushTokenDead PushAction = "token_dead"
)

// Key returns the Kafka record key: app and device, so that every record of
// one device lands on one partition, in order.
func (r *Record) Key() []byte {
	k := make([]byte, 0, len(r.AppID)+1+len(r.DeviceID))
	k = append(k, r.AppID...)
	k = append(k, '/')
	return append(k, r.DeviceID...)
}

// Extra returns the value of the extra named key.
func (r *Record) Extra(key string) (Value, bool) { return lookup(r.Extras, key) }

func lookup(xs []Extra, key string) (Value, bool) {
	lo, hi := 0, len(xs)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case xs[m].Key == key:
			return xs[m].Value, true
		case xs[m].Key < key:
			lo = m + 1
		default:
			hi = m
		}
	}
	return Value{}, false
}
