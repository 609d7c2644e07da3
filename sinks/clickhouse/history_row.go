package clickhouse

import (
	"fmt"
	"math"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// historyRow holds one row of the tags table as Read selects it
// (historySelect).
type historyRow struct {
	kind, device, user, id                                          string
	time, sent, received                                            time.Time
	appVersion, session, name, activity, job                        string
	duration                                                        float64
	nExtras, nInfo                                                  uint64
	strs                                                            []string // extra keys, extra texts, info keys, info texts, unplanned
	types                                                           []uint8  // extras', then app-info's
	nums                                                            []float64
	platform, deviceVersion, build, osVersion, model, maker, locale string
	zone, country, token, provider, action, delivery, campaign      string
	offset                                                          uint64
}

// dest returns the scan destinations, in the order of historySelect.
func (r *historyRow) dest() []any {
	return []any{&r.kind, &r.device, &r.user, &r.id, &r.time, &r.sent, &r.received, &r.appVersion,
		&r.session, &r.name, &r.activity, &r.job, &r.duration, &r.nExtras, &r.nInfo, &r.strs, &r.types, &r.nums,
		&r.platform, &r.deviceVersion, &r.build, &r.osVersion, &r.model, &r.maker, &r.locale, &r.zone, &r.country,
		&r.token, &r.provider, &r.action, &r.delivery, &r.campaign, &r.offset}
}

// record rebuilds the tag record the writers stored as this row: the
// inverse of tagCols.add and nativeBatch.add (see HistoryReader).
func (r *historyRow) record(app string) (*tag.Record, error) {
	kind, ok := tag.ParseKind(r.kind)
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", r.kind)
	}
	rec := &tag.Record{
		Kind: kind, AppID: app, DeviceID: r.device, UserID: r.user, MessageID: r.id,
		Time: r.time.UTC(), SentAt: unlessEpoch(r.sent), ReceivedAt: unlessEpoch(r.received),
		AppVersion: r.appVersion, SessionID: r.session, Name: r.name, Activity: r.activity, JobID: r.job,
		Duration: time.Duration(math.Round(r.duration * float64(time.Millisecond))),
	}
	nx, ni := int(r.nExtras), int(r.nInfo)
	if n := nx + ni; len(r.types) != n || len(r.nums) != n || len(r.strs) < 2*n {
		return nil, fmt.Errorf("%d extras and %d app-info keys, but %d types, %d numbers and %d strings", nx, ni, len(r.types), len(r.nums), len(r.strs))
	}
	var err error
	if rec.Extras, err = join(r.strs[:nx], r.types[:nx], r.strs[nx:2*nx], r.nums[:nx]); err != nil {
		return nil, fmt.Errorf("extras: %w", err)
	}
	s, n := r.strs[2*nx:], nx+ni
	if rec.AppInfo, err = join(s[:ni], r.types[nx:n], s[ni:2*ni], r.nums[nx:n]); err != nil {
		return nil, fmt.Errorf("app-info: %w", err)
	}
	switch kind {
	case tag.KindDevice:
		rec.Device = &tag.DeviceInfo{
			Platform: r.platform, AppVersion: r.deviceVersion, AppBuild: r.build, OSVersion: r.osVersion,
			Model: r.model, Manufacturer: r.maker, Locale: r.locale, TimeZone: r.zone, Country: r.country,
			PushToken: r.token, PushProvider: tag.PushProvider(r.provider),
		}
	case tag.KindPush:
		rec.Push = &tag.Push{Action: tag.PushAction(r.action), DeliveryID: r.delivery, CampaignID: r.campaign}
	}
	if u := s[2*ni:]; len(u) > 0 {
		rec.Unplanned = u[:len(u):len(u)]
	}
	return rec, nil
}

// unlessEpoch is the inverse of orEpoch.
func unlessEpoch(t time.Time) time.Time {
	if t.Unix() == 0 && t.Nanosecond() == 0 {
		return time.Time{}
	}
	return t.UTC()
}

// join is the inverse of split: parallel arrays back into typed extras.
// Numbers, bools and dates come from the numbers (dates are Unix seconds
// with milliseconds in the fraction), strings from the text.
func join(keys []string, types []uint8, strs []string, nums []float64) ([]tag.Extra, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if len(types) != len(keys) || len(strs) != len(keys) || len(nums) != len(keys) {
		return nil, fmt.Errorf("%d keys, %d types, %d strings, %d numbers", len(keys), len(types), len(strs), len(nums))
	}
	xs := make([]tag.Extra, len(keys))
	for i, k := range keys {
		v := tag.Value{Type: tag.Type(types[i])}
		switch v.Type {
		case tag.TypeString:
			v.Str = strs[i]
		case tag.TypeNumber:
			v.Num = nums[i]
		case tag.TypeBool:
			v.Bool = nums[i] != 0
		case tag.TypeDate:
			v.Date = time.UnixMilli(int64(math.Round(nums[i] * 1000))).UTC()
		default:
			return nil, fmt.Errorf("key %q: unknown type %d", k, types[i])
		}
		xs[i] = tag.Extra{Key: k, Value: v}
	}
	return xs, nil
}
