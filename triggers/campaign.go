package triggers

import (
	"time"
)

// Campaign is one campaign of an app: what is sent, to whom, when, and
// within which limits. Campaigns are written in YAML (or the same as JSON)
// and stored versioned in the configuration topic; Parse builds one and
// Check validates it against the app's segments and tag plan.
type Campaign struct {
	App  string
	Name string
	// Version is the offset of the campaign's configuration record: every
	// instance agrees on it. Zero for a campaign not stored yet.
	Version int64
	// Salt seeds the campaign's assignments (sample, control group,
	// variants); it defaults to the campaign's name, so that a new version
	// keeps every device where it was.
	Salt string

	What  What
	Who   Who
	When  When
	Limit Limits
	Goal  *Goal // nil: none
}

// Channel is how a message reaches a device.
type Channel string

// The channels.
const (
	ChannelPush  Channel = "push"   // a visible notification (APNs alert, FCM notification)
	ChannelData  Channel = "data"   // a silent data push
	ChannelInApp Channel = "in_app" // shown by the app while the user is in it
)

// What is the message: its channel and its content per locale.
type What struct {
	Channel Channel
	// DefaultLocale is the locale whose content a device gets when there is
	// none for its own (nor for its language: "fr" serves "fr-CA").
	DefaultLocale string
	// Content by locale (BCP 47: "en", "fr-FR"); must hold DefaultLocale.
	Content map[string]*Message
	// Missing says what a template field without a value does: use the
	// field's default (MissingDefault), or skip that device
	// (MissingSkip, a decision "skipped: missing value").
	Missing MissingPolicy
}

// MissingPolicy is what a template field without a value does.
type MissingPolicy string

// The missing-value policies.
const (
	MissingDefault MissingPolicy = "default"
	MissingSkip    MissingPolicy = "skip"
)

// Message is the content of one locale. Text fields are templates over
// app-info, device fields and the trigger's extras
// ({{app_info.first_name | default "there"}}).
type Message struct {
	// Push and data.
	Title, Body string
	Sound       string
	Badge       *int
	Image       string // URL
	DeepLink    string // URL the app opens
	Data        map[string]string
	CollapseID  string
	Priority    Priority
	TTL         time.Duration // how long the provider keeps trying; 0: the provider's default

	// In-app.
	Layout     InAppLayout
	Buttons    []Button
	Activities []string // the screens where it may show; empty: any
}

// Priority is a push's delivery priority.
type Priority string

// The priorities (APNs 10 and 5, FCM high and normal).
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
)

// InAppLayout is how an in-app message shows.
type InAppLayout string

// The in-app layouts.
const (
	LayoutBanner     InAppLayout = "banner"
	LayoutModal      InAppLayout = "modal"
	LayoutFullScreen InAppLayout = "full_screen"
)

// Button is an in-app message's button.
type Button struct {
	Label    string
	DeepLink string
}

// Who is the audience: devices in all of Segments (at least one), in none
// of Exclude, kept by the sample, then split into the control group
// (decided, never sent) and the variants.
type Who struct {
	Segments []string
	Exclude  []string
	// Sample is the share of the audience kept, in percent (0 < Sample <=
	// 100; 100 when not given).
	Sample float64
	// Control is the share of the kept devices held out, in percent
	// (0 <= Control < 100).
	Control float64
	// Variants split the rest by weight; none: one variant, the campaign's
	// content. A variant may replace the content (per locale).
	Variants []Variant
}

// Variant is one arm of an A/B(/n) test.
type Variant struct {
	Name    string
	Weight  float64
	Content map[string]*Message // nil: the campaign's content
}

// TriggerKind is what starts a send.
type TriggerKind string

// The trigger kinds.
const (
	// OnEntry sends when a device enters the campaign's segments (all of
	// them, none of the exclusions): the welcome series, the stalled level,
	// the lapsed user, the onboarding gap.
	OnEntry TriggerKind = "on_entry"
	// Once sends at one instant to the members then: in UTC, or at a wall
	// time in each device's own time zone (a send that rolls across time
	// zones).
	Once TriggerKind = "once"
	// Recurring sends daily or weekly at a local time of day to the
	// members then.
	Recurring TriggerKind = "recurring"
)

// When says when a campaign sends.
type When struct {
	Kind TriggerKind

	// OnEntry: wait Delay after the entry, then, if AlignTo is set, wait for
	// the next such local time of day in the device's time zone.
	Delay   time.Duration
	AlignTo *TimeOfDay

	// Once: At is the instant (UTC) or, with LocalTime, the wall time At
	// has in UTC read in each device's time zone.
	At        time.Time
	LocalTime bool

	// Recurring: every day (Weekdays empty) or on the given weekdays, at
	// TimeOfDay in the device's time zone.
	Every     *TimeOfDay
	Weekdays  []time.Weekday
	Start     time.Time // the campaign sends nothing before (zero: from its creation)
	End       time.Time // nor after (zero: no end)
	Expiry    time.Duration
	DefaultTZ string // the time zone of devices that sent none (IANA); "UTC" when not given
}

// TimeOfDay is a wall-clock time of day, to the minute.
type TimeOfDay struct {
	Hour, Minute int
}

// Limits bound what a campaign sends.
type Limits struct {
	// Quiet are the hours, in the device's local time, when nothing is
	// sent: from Quiet.From to Quiet.To (across midnight when From > To).
	Quiet *QuietHours
	// Once sends at most once per device; otherwise ReentryAfter (when
	// set) is the least time between two sends to one device.
	Once         bool
	ReentryAfter time.Duration
	// Priority decides between campaigns competing for one capped slot:
	// higher first, then the older campaign.
	Priority int
	// Rate bounds the campaign's sends per second (0: unbounded); sends
	// over it wait their turn.
	Rate float64
}

// QuietHours is a window of local time with no sends.
type QuietHours struct {
	From, To TimeOfDay
	// Drop drops a send that falls in the window; otherwise it is deferred
	// to the window's end.
	Drop bool
}

// Goal is what a campaign wants a device to do, for its statistics.
type Goal struct {
	Event  string
	Window time.Duration
}

// Caps are an app's frequency caps per device, across all its campaigns,
// per channel: at most PerDay sends in any 24 hours and PerWeek in any 7
// days (0: no cap).
type Caps struct {
	PerDay, PerWeek int
}
