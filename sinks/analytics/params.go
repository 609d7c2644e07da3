package analytics

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/triggers"
)

// Limits on parameters.
const (
	maxAppLen  = tag.MaxIDLen   // app ids, as records carry them
	maxNameLen = tag.MaxNameLen // tag names
	maxSteps   = 10
	minSteps   = 2
	dateLayout = "2006-01-02"
)

// ClickHouse's Date holds 1970-01-01 to 2105-12-31 (later on newer servers).
var (
	minDate = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDate = time.Date(2105, 12, 31, 0, 0, 0, 0, time.UTC)
)

// query holds a request's parameters, each given at most once, and the
// arguments of its path (campaign, device), checked by checkPathArgs.
type query struct {
	vals map[string]string
	path map[string]string
}

func parseQuery(raw string, allowed []string) (*query, *apiError) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "malformed_query", "query string: " + err.Error(), ""}
	}
	q := &query{vals: map[string]string{}}
	for k, vs := range v {
		if !slices.Contains(allowed, k) {
			takes := "takes " + strings.Join(allowed, ", ")
			if len(allowed) == 0 {
				takes = "takes no parameters"
			}
			return nil, &apiError{http.StatusBadRequest, "unknown_param", fmt.Sprintf("unknown parameter %q: this endpoint %s", clip(k), takes), clip(k)}
		}
		if len(vs) > 1 {
			return nil, badParam(k, "given %d times; give it once", len(vs))
		}
		q.vals[k] = vs[0]
	}
	return q, nil
}

func missing(param, what string) *apiError {
	return &apiError{http.StatusBadRequest, "missing_param", param + ": missing; " + what, param}
}

// dateRange returns from and to (inclusive, UTC midnight), both required.
func (q *query) dateRange(max time.Duration) (from, to time.Time, e *apiError) {
	if from, e = q.date("from"); e != nil {
		return
	}
	if to, e = q.date("to"); e != nil {
		return
	}
	if from.After(to) {
		return from, to, badParam("from", "%s is after to (%s)", from.Format(dateLayout), to.Format(dateLayout))
	}
	maxDays := int(max / (24 * time.Hour))
	if days := int(to.Sub(from)/(24*time.Hour)) + 1; days > maxDays {
		return from, to, &apiError{http.StatusBadRequest, "range_too_long", fmt.Sprintf("to: %d days from %s to %s, more than the limit of %d", days, from.Format(dateLayout), to.Format(dateLayout), maxDays), "to"}
	}
	return from, to, nil
}

func (q *query) date(name string) (time.Time, *apiError) {
	s, ok := q.vals[name]
	if !ok || s == "" {
		return time.Time{}, missing(name, "give a date as YYYY-MM-DD (UTC)")
	}
	d, err := time.Parse(dateLayout, s)
	if err != nil || len(s) != len(dateLayout) {
		return time.Time{}, badParam(name, "%q is not a date: use YYYY-MM-DD", clip(s))
	}
	if d.Before(minDate) || d.After(maxDate) {
		return time.Time{}, badParam(name, "%s is outside %s..%s", s, minDate.Format(dateLayout), maxDate.Format(dateLayout))
	}
	return d, nil
}

// integer returns the parameter as an integer in [lo, hi], or def if absent.
func (q *query) integer(name string, def, lo, hi int) (int, *apiError) {
	s, ok := q.vals[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, badParam(name, "%q is not an integer", clip(s))
	}
	if n < lo || n > hi {
		return 0, badParam(name, "%d is not in %d..%d", n, lo, hi)
	}
	return n, nil
}

// enum returns the parameter, which must be one of options, or def if
// absent (def "" makes it required).
func (q *query) enum(name, def string, options ...string) (string, *apiError) {
	s, ok := q.vals[name]
	if !ok {
		if def == "" {
			return "", missing(name, "use one of "+strings.Join(options, ", "))
		}
		return def, nil
	}
	if !slices.Contains(options, s) {
		return "", badParam(name, "%q is not one of %s", clip(s), strings.Join(options, ", "))
	}
	return s, nil
}

// text returns a required name-like parameter: valid UTF-8 without control
// characters, at most max bytes. It is used as a bound literal, never
// spliced into SQL.
func (q *query) text(name string, max int, what string) (string, *apiError) {
	s, ok := q.vals[name]
	if !ok || s == "" {
		return "", missing(name, what)
	}
	if msg := checkText(s, max); msg != "" {
		return "", badParam(name, "%s", msg)
	}
	return s, nil
}

// Step is one step of a funnel: records of a kind with a name.
type Step struct {
	Kind string `json:"kind"` // event, activity, job, error or crash
	Name string `json:"name"`
}

// stepKinds maps a step or top kind to the record kinds it stands for: an
// activity is its activity_start, a job its job or job_end record (a
// finished job).
var stepKinds = map[string][]string{
	"event":    {"event"},
	"activity": {"activity_start"},
	"job":      {"job", "job_end"},
	"error":    {"error"},
	"crash":    {"crash"},
}

var kindList = "event, activity, job, error, crash"

// steps parses "kind:name,kind:name,…". A name may contain ':' (only the
// first one splits) but not ','.
func (q *query) steps() ([]Step, *apiError) {
	s, ok := q.vals["steps"]
	if !ok || s == "" {
		return nil, missing("steps", "give 2 to 10 steps as kind:name,kind:name (kinds "+kindList+")")
	}
	parts := strings.Split(s, ",")
	if len(parts) < minSteps || len(parts) > maxSteps {
		return nil, badParam("steps", "%d steps; give %d to %d", len(parts), minSteps, maxSteps)
	}
	steps := make([]Step, 0, len(parts))
	for i, p := range parts {
		kind, name, ok := strings.Cut(p, ":")
		if !ok {
			return nil, badParam("steps", "step %d %q is not kind:name", i+1, clip(p))
		}
		if _, ok := stepKinds[kind]; !ok {
			return nil, badParam("steps", "step %d: kind %q is not one of %s", i+1, clip(kind), kindList)
		}
		if msg := checkText(name, maxNameLen); msg != "" {
			return nil, badParam("steps", "step %d: name %s", i+1, msg)
		}
		st := Step{kind, name}
		if slices.Contains(steps, st) {
			return nil, badParam("steps", "step %d repeats %s:%s; a funnel's steps must differ", i+1, kind, clip(name))
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// campaignNameRE is the rule triggers.Check holds campaign names to.
var campaignNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// checkPathArgs checks the arguments of a campaign route: a campaign name
// as campaign files name campaigns, a device id as records carry it.
func checkPathArgs(args map[string]string) *apiError {
	if c, ok := args["campaign"]; ok {
		if msg := checkText(c, triggers.MaxCampaignName); msg != "" {
			return badParam("campaign", "campaign name %s", msg)
		}
		if !campaignNameRE.MatchString(c) {
			return badParam("campaign", "%q is not a campaign name: use letters, digits, _, - and . (starting with a letter or digit)", clip(c))
		}
	}
	if d, ok := args["device"]; ok {
		if msg := checkText(d, maxAppLen); msg != "" {
			return badParam("device", "device id %s", msg)
		}
	}
	return nil
}

// duration returns the parameter as a duration of whole seconds in
// [1 s, max], or def if absent: Go's form (90m, 24h, 1h30m, 3600s) or
// whole days (7d).
func (q *query) duration(name string, def, max time.Duration) (time.Duration, *apiError) {
	s, ok := q.vals[name]
	if !ok {
		return def, nil
	}
	var d time.Duration
	if n, found := strings.CutSuffix(s, "d"); found {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > int(max/day)+1 {
			return 0, badParam(name, "%q is not a duration: use 90m, 24h, 1h30m or 7d", clip(s))
		}
		d = time.Duration(days) * day
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, badParam(name, "%q is not a duration: use 90m, 24h, 1h30m or 7d", clip(s))
		}
	}
	if d%time.Second != 0 {
		return 0, badParam(name, "%s is not a whole number of seconds", d)
	}
	if d < time.Second || d > max {
		return 0, badParam(name, "%s is not in 1s..%s", s, fmtDays(max))
	}
	return d, nil
}

// fmtDays writes a duration of whole days as 90d, others as Go does.
func fmtDays(d time.Duration) string {
	if d%day == 0 {
		return strconv.Itoa(int(d/day)) + "d"
	}
	return d.String()
}
