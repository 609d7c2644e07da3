package tag

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on one record. They are documented in docs/tags.md; the collector
// refuses a record that breaks one, naming the field and the limit.
const (
	MaxExtras      = 64        // extras (or app-info keys) per record
	MaxKeyLen      = 64        // bytes in an extras or app-info key
	MaxValueLen    = 1024      // bytes in a string value
	MaxNameLen     = 256       // bytes in a name, activity, session or job id
	MaxIDLen       = 128       // bytes in an app, device, user or message id
	MaxRecordBytes = 32 * 1024 // bytes of one record as sent
	MaxFutureSkew  = 24 * time.Hour
)

// FieldError says which field of a record is wrong and why.
type FieldError struct {
	Field  string // e.g. "extras.words", "device.timeZone"
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidKey reports whether s is a valid extras or app-info key:
// ^[A-Za-z][A-Za-z0-9_]*$ and at most MaxKeyLen bytes.
func ValidKey(s string) bool {
	if s == "" || len(s) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// Validate checks the record against the model's rules and limits, as a
// device may send it. It returns a *FieldError for the first rule broken,
// nil if the record is good. It sorts Extras and AppInfo by key if they are
// not sorted.
func (r *Record) Validate() error { return r.validate(false) }

// ValidateStored checks a record read from the tags topic: Validate's
// rules, with the records the platform itself writes there accepted too (a
// push record token_dead, from the dispatcher).
func (r *Record) ValidateStored() error { return r.validate(true) }

func (r *Record) validate(platform bool) error {
	if r.Kind == KindInvalid || r.Kind >= kindCount {
		return fieldErr("type", "unknown record type %d", r.Kind)
	}
	if err := checkID("app", r.AppID, true); err != nil {
		return err
	}
	if err := checkID("device", r.DeviceID, true); err != nil {
		return err
	}
	if err := checkID("user", r.UserID, false); err != nil {
		return err
	}
	if err := checkID("id", r.MessageID, true); err != nil {
		return err
	}
	if r.Time.IsZero() {
		return fieldErr("time", "missing event time")
	}
	if !r.ReceivedAt.IsZero() && r.Time.After(r.ReceivedAt.Add(MaxFutureSkew)) {
		return fieldErr("time", "%s is more than %s in the future even after clock-skew correction", r.Time.Format(time.RFC3339), MaxFutureSkew)
	}
	for _, f := range [...]struct{ name, v string }{{"appVersion", r.AppVersion}, {"session", r.SessionID}, {"name", r.Name}, {"activity", r.Activity}, {"jobId", r.JobID}} {
		if err := checkText(f.name, f.v, MaxNameLen); err != nil {
			return err
		}
	}
	if r.Kind.Named() && r.Name == "" {
		return fieldErr("name", "%s record needs a name", article(r.Kind))
	}
	if !r.Kind.Named() && r.Name != "" {
		return fieldErr("name", "%s record has no name", article(r.Kind))
	}
	if r.Duration < 0 {
		return fieldErr("duration", "negative duration %s", r.Duration)
	}
	if r.Kind == KindJob && r.Duration == 0 {
		return fieldErr("duration", "a job record needs a duration (or send job_start and job_end)")
	}
	if err := checkExtras("extras", r.Extras); err != nil {
		return err
	}
	if r.Kind == KindAppInfo {
		if len(r.AppInfo) == 0 {
			return fieldErr("appInfo", "an app_info record needs at least one attribute")
		}
		if err := checkExtras("appInfo", r.AppInfo); err != nil {
			return err
		}
	} else if len(r.AppInfo) > 0 {
		return fieldErr("appInfo", "only app_info records carry app-info")
	}
	if (r.Kind == KindDevice) != (r.Device != nil) {
		if r.Device == nil {
			return fieldErr("device", "a device record needs device info")
		}
		return fieldErr("device", "only device records carry device info")
	}
	if r.Device != nil {
		if err := r.Device.validate(); err != nil {
			return err
		}
	}
	if (r.Kind == KindPush) != (r.Push != nil) {
		if r.Push == nil {
			return fieldErr("action", "a push record needs an action")
		}
		return fieldErr("action", "only push records carry push feedback")
	}
	if r.Push != nil {
		if err := r.Push.validate(platform); err != nil {
			return err
		}
	}
	if len(r.Unplanned) > 2*MaxExtras {
		return fieldErr("unplanned", "%d marks, more than the limit of %d", len(r.Unplanned), 2*MaxExtras)
	}
	for _, m := range r.Unplanned {
		if err := checkText("unplanned", m, 2*MaxNameLen); err != nil {
			return err
		}
	}
	return nil
}

func checkID(field, v string, required bool) *FieldError {
	if v == "" {
		if required {
			return fieldErr(field, "missing")
		}
		return nil
	}
	return checkText(field, v, MaxIDLen)
}

func checkText(field, v string, max int) *FieldError {
	if len(v) > max {
		return fieldErr(field, "%d bytes, more than the limit of %d", len(v), max)
	}
	// Printable ASCII, the usual id or name, is valid: one pass over it.
	// Anything else is checked for UTF-8 first, then for control
	// characters, whatever comes first in v.
	i := 0
	for i < len(v) && v[i] >= 0x20 && v[i] < 0x7f {
		i++
	}
	if i == len(v) {
		return nil
	}
	if !utf8.ValidString(v) {
		return fieldErr(field, "not valid UTF-8")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return fieldErr(field, "contains control character 0x%02x", v[i])
		}
	}
	return nil
}

func checkExtras(field string, xs []Extra) *FieldError {
	if len(xs) > MaxExtras {
		return fieldErr(field, "%d keys, more than the limit of %d", len(xs), MaxExtras)
	}
	sortExtras(xs)
	for i, x := range xs {
		name := func() string { return field + "." + x.Key }
		if !ValidKey(x.Key) {
			return fieldErr(field+"."+safeKey(x.Key), "invalid key: keys match ^[A-Za-z][A-Za-z0-9_]*$ and have at most %d bytes", MaxKeyLen)
		}
		if i > 0 && xs[i-1].Key == x.Key {
			return fieldErr(name(), "duplicate key")
		}
		switch x.Value.Type {
		case TypeString:
			if len(x.Value.Str) > MaxValueLen {
				return fieldErr(name(), "string of %d bytes, more than the limit of %d", len(x.Value.Str), MaxValueLen)
			}
			if !utf8.ValidString(x.Value.Str) {
				return fieldErr(name(), "not valid UTF-8")
			}
		case TypeNumber:
			if math.IsNaN(x.Value.Num) || math.IsInf(x.Value.Num, 0) {
				return fieldErr(name(), "number must be finite")
			}
		case TypeBool, TypeDate:
		default:
			return fieldErr(name(), "value has no type")
		}
	}
	return nil
}

// safeKey shortens and quotes a bad key for an error message.
func safeKey(k string) string {
	if len(k) > MaxKeyLen {
		k = k[:MaxKeyLen] + "…"
	}
	return fmt.Sprintf("%q", k)
}

var platforms = map[string]bool{"ios": true, "android": true, "web": true, "windows": true, "macos": true, "other": true}

func (d *DeviceInfo) validate() *FieldError {
	for _, f := range [...]struct{ name, v string }{
		{"device.platform", d.Platform}, {"device.appVersion", d.AppVersion}, {"device.appBuild", d.AppBuild},
		{"device.osVersion", d.OSVersion}, {"device.model", d.Model}, {"device.manufacturer", d.Manufacturer},
		{"device.locale", d.Locale}, {"device.timeZone", d.TimeZone}, {"device.country", d.Country},
	} {
		if err := checkText(f.name, f.v, MaxNameLen); err != nil {
			return err
		}
	}
	if d.Platform != "" && !platforms[d.Platform] {
		return fieldErr("device.platform", "%q is not one of ios, android, web, windows, macos, other", d.Platform)
	}
	if d.Locale != "" && !validLocale(d.Locale) {
		return fieldErr("device.locale", "%q is not a BCP 47 locale such as fr-FR", d.Locale)
	}
	if d.TimeZone != "" && !ValidTimeZone(d.TimeZone) {
		return fieldErr("device.timeZone", "%q is not an IANA time zone such as Europe/Paris", d.TimeZone)
	}
	if d.Country != "" && !validCountry(d.Country) {
		return fieldErr("device.country", "%q is not an ISO 3166-1 alpha-2 code such as FR", d.Country)
	}
	if err := checkText("device.pushToken", d.PushToken, MaxValueLen*4); err != nil {
		return err
	}
	switch d.PushProvider {
	case ProviderNone:
		if d.PushToken != "" {
			return fieldErr("device.pushProvider", "a push token needs its provider: apns, apns-sandbox or fcm")
		}
	case ProviderAPNs, ProviderAPNsSandbox:
		if !isHex(d.PushToken) || len(d.PushToken) < 32 {
			return fieldErr("device.pushToken", "an APNs token is a hexadecimal string of at least 32 digits")
		}
	case ProviderFCM:
		if d.PushToken == "" {
			return fieldErr("device.pushToken", "missing for provider fcm")
		}
	default:
		return fieldErr("device.pushProvider", "%q is not one of apns, apns-sandbox, fcm", d.PushProvider)
	}
	return nil
}

func (p *Push) validate(platform bool) *FieldError {
	switch p.Action {
	case PushReceived, PushOpened, PushClicked, PushDismissed, PushShown:
	case PushTokenDead:
		if !platform {
			return fieldErr("action", "token_dead is written by the dispatcher, not sent by devices; a device sends received, opened, clicked, dismissed or shown")
		}
	default:
		return fieldErr("action", "%q is not one of received, opened, clicked, dismissed, shown", p.Action)
	}
	if err := checkID("delivery", p.DeliveryID, true); err != nil {
		return err
	}
	return checkID("campaign", p.CampaignID, false)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// validLocale accepts language[-Script][-REGION] and similar BCP 47 tags:
// subtags of 1 to 8 letters or digits separated by '-' (or '_', as Android
// and iOS often send them), the first 2 or 3 letters.
func validLocale(s string) bool {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' })
	if len(parts) == 0 || len(parts[0]) < 2 || len(parts[0]) > 3 {
		return false
	}
	for i, p := range parts {
		if len(p) == 0 || len(p) > 8 {
			return false
		}
		for j := 0; j < len(p); j++ {
			c := p[j]
			letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
			if !letter && !(i > 0 && c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

func validCountry(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

// article returns the kind with "a" or "an" before it, for messages.
func article(k Kind) string {
	s := k.String()
	if strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
}
