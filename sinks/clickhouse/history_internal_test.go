package clickhouse

import (
	"fmt"
	"testing"
	"time"
)

// TestHistorySince checks the event-time conditions for both column types;
// the DateTime64 one runs against servers from 20.1, which the tests here
// do not have.
func TestHistorySince(t *testing.T) {
	at := time.Date(2026, 11, 20, 9, 30, 15, 123456789, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		digits int
		t      time.Time
		want   string
	}{
		{0, at, "event_date >= toDate(?) AND event_time >= toDateTime(?) [2026-11-20 1795163415]"},
		{3, at, "event_date >= toDate(?) AND event_time >= toDateTime64(?, 3, 'UTC') [2026-11-20 2026-11-20 08:30:15.123]"},
		{6, at, "event_date >= toDate(?) AND event_time >= toDateTime64(?, 6, 'UTC') [2026-11-20 2026-11-20 08:30:15.123456]"},
		{0, time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), " []"},
		{3, time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), "event_time >= toDateTime64(?, 3, 'UTC') [1969-12-31 00:00:00.000]"},
		{3, time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC), " []"},
		{0, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), "event_date >= toDate(?) AND event_time >= toDateTime(?) [2200-01-01 4294967295]"},
	} {
		l := timeLayout{digits: tc.digits}
		c, args := l.since(tc.t)
		if got := fmt.Sprint(c, " ", args); got != tc.want {
			t.Errorf("%d digits, %v:\n got %s\nwant %s", tc.digits, tc.t, got, tc.want)
		}
	}
}
