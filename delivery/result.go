package delivery

import (
	"strconv"
	"time"
)

// Kind is what a provider's answer means for the delivery and the token.
type Kind int

// The kinds of Result.
const (
	Sent Kind = iota
	Retry
	TokenDead
	AuthFailed
	Refused
)

var kindNames = [...]string{"sent", "retry", "token_dead", "auth_failed", "refused"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Result is a provider's answer to one send, classified.
type Result struct {
	Kind Kind
	// Reason is the provider's own word for it ("BadDeviceToken",
	// "UNREGISTERED", "status 503", a network error), for metrics and the
	// decision's reason.
	Reason string
	// RetryAfter is the provider's Retry-After, 0 when it gave none.
	RetryAfter time.Duration
	// ProviderID is the provider's id of a sent message (apns-id, the FCM
	// message name).
	ProviderID string
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := time.Parse(time.RFC1123, v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
