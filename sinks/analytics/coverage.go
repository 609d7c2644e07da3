package analytics

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// PlannedTag is a tag an app's tag plan declares. Kind is the plan's
// section as tagplan names it in marks: activity, event, job, error or
// crash.
type PlannedTag struct {
	Kind string
	Name string
}

// PlannedTags is what an app's tag plan declares, for the coverage report.
type PlannedTags struct {
	Tags     []PlannedTag
	AnyCrash bool // crashes: any — every crash name is planned
}

// PlanSource gives the apps' tag plans. Requests call it concurrently; it
// must be safe for concurrent use and should not block.
type PlanSource interface {
	// PlannedTags returns what app's plan declares; false if app has no
	// plan.
	PlannedTags(app string) (PlannedTags, bool)
}

// PlanSourceFunc adapts a function to a PlanSource.
type PlanSourceFunc func(app string) (PlannedTags, bool)

// PlannedTags calls f.
func (f PlanSourceFunc) PlannedTags(app string) (PlannedTags, bool) { return f(app) }

// UnknownVersion labels records that carry no app version.
const UnknownVersion = "unknown"

// TagCoverage is one tag in the coverage report.
type TagCoverage struct {
	Kind      string     `json:"kind"`
	Name      string     `json:"name"`
	Seen      bool       `json:"seen"`
	Records   uint64     `json:"records"` // distinct records of the tag's kinds (activity: start and end; job: job, job_start, job_end)
	FirstSeen *time.Time `json:"first_seen,omitempty"`
	LastSeen  *time.Time `json:"last_seen,omitempty"`
}

// MarkCoverage is one of tagplan's unplanned marks ("event:foo",
// "extra:event:bar:key", "app_info:key", …) seen on records.
type MarkCoverage struct {
	Mark      string    `json:"mark"`
	Records   uint64    `json:"records"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// VersionCoverage is the coverage report of one app version.
type VersionCoverage struct {
	AppVersion string         `json:"app_version"` // UnknownVersion for records without one
	Records    uint64         `json:"records"`     // distinct records of any kind
	Planned    []TagCoverage  `json:"planned"`     // every planned tag, seen or not, by kind and name
	Unplanned  []TagCoverage  `json:"unplanned"`   // names seen that the plan does not declare, most records first
	Marks      []MarkCoverage `json:"marks"`       // unplanned marks, most records first
}

// Coverage is the answer of /coverage.
type Coverage struct {
	Range
	AnyCrash bool              `json:"any_crash"`
	Versions []VersionCoverage `json:"versions"`
}

// markKind maps a record kind to its plan section.
var markKind = map[string]string{
	"activity_start": "activity", "activity_end": "activity", "event": "event",
	"job": "job", "job_start": "job", "job_end": "job", "error": "error", "crash": "crash",
}

func (a *API) coverage(ctx context.Context, app string, q *query) (any, error) {
	from, to, e := q.dateRange(a.cfg.MaxRange)
	if e != nil {
		return nil, e
	}
	var plan PlannedTags
	ok := false
	if a.plans != nil {
		plan, ok = a.plans.PlannedTags(app)
	}
	if !ok {
		return nil, &apiError{http.StatusNotFound, "no_plan", fmt.Sprintf("app %q has no tag plan", app), "app"}
	}
	versions := versionAccs{}
	args := []any{app, from.Format(dateLayout), to.Format(dateLayout)}
	if err := a.coverageTags(ctx, args, versions); err != nil {
		return nil, err
	}
	if err := a.coverageMarks(ctx, args, versions); err != nil {
		return nil, err
	}
	res := Coverage{Range: newRange(app, from, to), AnyCrash: plan.AnyCrash, Versions: []VersionCoverage{}}
	for label, v := range versions {
		res.Versions = append(res.Versions, v.report(label, plan))
	}
	slices.SortFunc(res.Versions, func(x, y VersionCoverage) int { return cmp.Compare(x.AppVersion, y.AppVersion) })
	return res, nil
}

// coverageTags counts the records of each app version, and of each named
// tag in it.
func (a *API) coverageTags(ctx context.Context, args []any, versions versionAccs) error {
	return a.each(ctx, `SELECT app_version, kind, name, uniqExact(device_id, message_id), min(event_time), max(event_time)
		FROM `+a.table("tags")+`
		WHERE app = ? AND event_date >= toDate(?) AND event_date <= toDate(?)
		GROUP BY app_version, kind, name`, args, func(r driver.Rows) error {
		var version, kind, name string
		var n uint64
		var first, last time.Time
		if err := r.Scan(&version, &kind, &name, &n, &first, &last); err != nil {
			return err
		}
		v := versions.of(version)
		v.records += n
		if sec, ok := markKind[kind]; ok {
			k := PlannedTag{sec, name}
			v.tags[k] = merge(v.tags[k], sec, name, n, first, last)
		}
		return nil
	})
}

// coverageMarks counts the records bearing each unplanned mark, per app
// version.
func (a *API) coverageMarks(ctx context.Context, args []any, versions versionAccs) error {
	return a.each(ctx, `SELECT app_version, mark, uniqExact(device_id, message_id), min(event_time), max(event_time)
		FROM `+a.table("tags")+` ARRAY JOIN unplanned AS mark
		WHERE app = ? AND event_date >= toDate(?) AND event_date <= toDate(?) AND notEmpty(unplanned)
		GROUP BY app_version, mark`, args, func(r driver.Rows) error {
		var m MarkCoverage
		var version string
		if err := r.Scan(&version, &m.Mark, &m.Records, &m.FirstSeen, &m.LastSeen); err != nil {
			return err
		}
		m.FirstSeen, m.LastSeen = m.FirstSeen.UTC(), m.LastSeen.UTC()
		v := versions.of(version)
		// Two stored versions may share a label ("" and "unknown").
		if i := slices.IndexFunc(v.marks, func(x MarkCoverage) bool { return x.Mark == m.Mark }); i >= 0 {
			x := &v.marks[i]
			x.Records += m.Records
			x.FirstSeen, x.LastSeen = minTime(x.FirstSeen, m.FirstSeen), maxTime(x.LastSeen, m.LastSeen)
			return nil
		}
		v.marks = append(v.marks, m)
		return nil
	})
}

// versionAccs accumulates the report by app version label.
type versionAccs map[string]*versionAcc

func (vs versionAccs) of(version string) *versionAcc {
	if version == "" {
		version = UnknownVersion
	}
	if vs[version] == nil {
		vs[version] = &versionAcc{tags: map[PlannedTag]*TagCoverage{}}
	}
	return vs[version]
}

type versionAcc struct {
	records uint64
	tags    map[PlannedTag]*TagCoverage
	marks   []MarkCoverage
}

func merge(t *TagCoverage, kind, name string, n uint64, first, last time.Time) *TagCoverage {
	first, last = first.UTC(), last.UTC()
	if t == nil {
		return &TagCoverage{Kind: kind, Name: name, Seen: true, Records: n, FirstSeen: &first, LastSeen: &last}
	}
	t.Records += n
	f, l := minTime(*t.FirstSeen, first), maxTime(*t.LastSeen, last)
	t.FirstSeen, t.LastSeen = &f, &l
	return t
}

func (v *versionAcc) report(label string, plan PlannedTags) VersionCoverage {
	out := VersionCoverage{AppVersion: label, Records: v.records, Planned: []TagCoverage{}, Unplanned: []TagCoverage{}, Marks: v.marks}
	planned := map[PlannedTag]bool{}
	for _, p := range plan.Tags {
		if planned[p] {
			continue
		}
		planned[p] = true
		if t := v.tags[p]; t != nil {
			out.Planned = append(out.Planned, *t)
		} else {
			out.Planned = append(out.Planned, TagCoverage{Kind: p.Kind, Name: p.Name})
		}
	}
	for k, t := range v.tags {
		switch {
		case planned[k]:
		case k.Kind == "crash" && plan.AnyCrash:
			out.Planned = append(out.Planned, *t)
		default:
			out.Unplanned = append(out.Unplanned, *t)
		}
	}
	byName := func(x, y TagCoverage) int { return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Name, y.Name)) }
	slices.SortFunc(out.Planned, byName)
	slices.SortFunc(out.Unplanned, func(x, y TagCoverage) int { return cmp.Or(cmp.Compare(y.Records, x.Records), byName(x, y)) })
	if out.Marks == nil {
		out.Marks = []MarkCoverage{}
	}
	slices.SortFunc(out.Marks, func(x, y MarkCoverage) int {
		return cmp.Or(cmp.Compare(y.Records, x.Records), cmp.Compare(x.Mark, y.Mark))
	})
	return out
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
