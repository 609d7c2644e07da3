package analytics

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/apiauth"
)

// Config configures the analytics API.
type Config struct {
	// Tokens are the bearer tokens and the app ids each may read ("*":
	// every app), kept by their SHA-256 (apiauth.ParseTokens checks them:
	// at least apiauth.MinTokenLen printable bytes, at least one app).
	Tokens *apiauth.Tokens

	MaxRange         time.Duration // longest from..to range, whole days (400 days)
	MaxRetentionDays int           // largest days= of /retention
	MaxFunnelWindow  time.Duration // largest window= of /funnel
	MaxLimit         int           // largest limit= of /top and /app-info
	QueryTimeout     time.Duration // per request; also the server's max_execution_time

	// ReadonlyUser says that the ClickHouse user is read-only by its
	// profile (readonly=1). Such a user may not change settings, so the
	// API then sends none: the profile must bound max_execution_time.
	// Otherwise every query carries readonly=2 and max_execution_time.
	ReadonlyUser bool
}

// Defaults.
const (
	DefaultMaxRange         = 400 * 24 * time.Hour
	DefaultMaxRetentionDays = 90
	DefaultMaxFunnelWindow  = 90 * 24 * time.Hour
	DefaultMaxLimit         = 1000
	DefaultQueryTimeout     = 30 * time.Second
)

// DefaultConfig returns the defaults, with no tokens.
func DefaultConfig() Config {
	return Config{
		MaxRange: DefaultMaxRange, MaxRetentionDays: DefaultMaxRetentionDays,
		MaxFunnelWindow: DefaultMaxFunnelWindow, MaxLimit: DefaultMaxLimit, QueryTimeout: DefaultQueryTimeout,
	}
}

// Validate checks the configuration. Its errors never contain a token.
func (c Config) Validate() error {
	var errs []error
	if c.Tokens.Len() == 0 {
		errs = append(errs, errors.New("analytics: no API tokens: configure at least one bearer token and the app ids it may read (or *)"))
	}
	if c.MaxRange < 24*time.Hour {
		errs = append(errs, fmt.Errorf("analytics: max range %s is less than a day", c.MaxRange))
	}
	if c.MaxRetentionDays < 1 || c.MaxRetentionDays > 366 {
		errs = append(errs, fmt.Errorf("analytics: max retention days %d not in 1..366", c.MaxRetentionDays))
	}
	if c.MaxFunnelWindow < time.Second {
		errs = append(errs, fmt.Errorf("analytics: max funnel window %s is less than a second", c.MaxFunnelWindow))
	}
	if c.MaxLimit < 1 {
		errs = append(errs, fmt.Errorf("analytics: max limit %d is less than 1", c.MaxLimit))
	}
	if c.QueryTimeout < time.Second {
		errs = append(errs, fmt.Errorf("analytics: query timeout %s (-clickhouse.query-timeout) is less than a second", c.QueryTimeout))
	}
	return errors.Join(errs...)
}

// checkText applies the tag model's rules for ids and names (valid UTF-8,
// no control characters, at most max bytes) and returns what is wrong, or
// "".
func checkText(s string, max int) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > max:
		return fmt.Sprintf("%d bytes, more than the limit of %d", len(s), max)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Sprintf("contains control character 0x%02x", s[i])
		}
	}
	return ""
}
