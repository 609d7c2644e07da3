package processor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/segments/engine"
)

// nameRE is what app and segment names may be: they are part of
// configuration keys and URLs.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

// Validate parses and checks a definition against the app's tag plan (nil:
// no plan) and the other segments of the app as they would be with it
// (references must exist and form no cycle). It returns the parsed
// segment.
func Validate(d Definition, plan *tagplan.Plan, others []Definition) (*segments.Segment, error) {
	if !nameRE.MatchString(d.App) {
		return nil, fmt.Errorf("app %q: use 1 to 100 letters, digits, '_', '.' or '-'", d.App)
	}
	if !nameRE.MatchString(d.Name) {
		return nil, fmt.Errorf("segment name %q: use 1 to 100 letters, digits, '_', '.' or '-'", d.Name)
	}
	expr, err := segments.Parse(d.Text)
	if err != nil {
		return nil, err
	}
	seg := &segments.Segment{App: d.App, Name: d.Name, Text: d.Text, Expr: expr}
	exprs := map[string]segments.Node{d.Name: expr}
	for _, o := range others {
		if o.App != d.App || o.Name == d.Name {
			continue
		}
		if e, err := segments.Parse(o.Text); err == nil {
			exprs[o.Name] = e
		}
	}
	if err := segments.Check(seg, plan, func(name string) bool { _, ok := exprs[name]; return ok }); err != nil {
		return nil, err
	}
	if err := segments.CheckRefs(exprs); err != nil {
		return nil, err
	}
	return seg, nil
}

// API serves segment management and live membership over HTTP:
//
//	GET    /v1/segments?app=A                      definitions, status and size
//	PUT    /v1/segments/{app}/{name}               create or update (text body, or JSON {"text"} or {"expr"})
//	DELETE /v1/segments/{app}/{name}
//	GET    /v1/segments/{app}/{name}               one segment
//	GET    /v1/segments/{app}/{name}/members       device ids, one per line
//	GET    /v1/segments/{app}/{name}/explain?device=D
//
// Sizes, members and explanations cover every partition, whichever
// instance owns it: an instance answers for the partitions it owns, and
// asks the instances that announced the others (Instance records in the
// configuration topic) with the caller's token:
//
//	GET    /v1/local/statuses?app=A                  per partition, sizes and statuses of this instance's partitions
//	GET    /v1/segments/{app}/{name}/members?partitions=0,3   members of those of the partitions this instance owns
//	GET    /v1/segments/{app}/{name}/explain?device=D&local=1 no forwarding
//
// Every answer lists the partitions it covers ("partitions", or the
// Engage-Partitions header) and those no instance answered for
// ("missing_partitions", Engage-Missing-Partitions: a partition that is
// moving, or an instance that is down): a size is exact when none is
// missing.
type API struct {
	Proc   *Processor
	Store  *Store
	Config bus.Producer // writes the configuration topic
	Topic  string       // the configuration topic
	Plans  func(app string) (*tagplan.Plan, bool)
	// Tokens maps bearer tokens to the apps they may manage ("*": all).
	Tokens map[string][]string
	Now    func() time.Time
	// Client calls the other instances (nil: a client with a 10 s
	// timeout).
	Client *http.Client
}

type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/segments", a.wrap(a.list))
	mux.HandleFunc("GET /v1/segments/{app}/{name}", a.wrap(a.get))
	mux.HandleFunc("PUT /v1/segments/{app}/{name}", a.wrap(a.put))
	mux.HandleFunc("DELETE /v1/segments/{app}/{name}", a.wrap(a.del))
	mux.HandleFunc("GET /v1/segments/{app}/{name}/members", a.wrap(a.members))
	mux.HandleFunc("GET /v1/segments/{app}/{name}/explain", a.wrap(a.explain))
	mux.HandleFunc("GET /v1/local/statuses", a.wrap(a.localStatuses))
	return mux
}

func (a *API) wrap(fn func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(w, r)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				ae = &apiError{http.StatusInternalServerError, err.Error()}
			}
			if ae.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="engage"`)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ae.status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": ae.msg})
			return
		}
		if v == nil {
			return // streamed
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
}

// allowed checks the bearer token against the app ("" : any app the token
// has, for listing); it returns the apps the token covers.
func (a *API) allowed(r *http.Request, app string) (func(string) bool, error) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, &apiError{http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token>"}
	}
	apps, ok := a.Tokens[tok]
	if !ok {
		return nil, &apiError{http.StatusUnauthorized, "unknown bearer token"}
	}
	may := func(app string) bool {
		for _, x := range apps {
			if x == "*" || x == app {
				return true
			}
		}
		return false
	}
	if app != "" && !may(app) {
		return nil, &apiError{http.StatusForbidden, fmt.Sprintf("this token may not manage app %q", app)}
	}
	return may, nil
}

// SegmentInfo is one segment as the API shows it.
type SegmentInfo struct {
	Definition
	Error      string     `json:"error,omitempty"` // why it is not active
	Size       *int       `json:"size,omitempty"`  // members on the partitions listed
	Complete   *bool      `json:"complete,omitempty"`
	CountsFrom *time.Time `json:"counts_from,omitempty"`
	CompleteAt *time.Time `json:"complete_at,omitempty"`
	// Filling is true while some partition fills the segment's conditions
	// from the history store; Fill sums the progress over the partitions.
	Filling    bool      `json:"filling,omitempty"`
	Fill       *FillInfo `json:"fill,omitempty"`
	Why        string    `json:"why,omitempty"`
	Partitions []int     `json:"partitions"`
	// MissingPartitions are the partitions no instance answered for: the
	// size then counts the others only.
	MissingPartitions []int `json:"missing_partitions,omitempty"`
}

// PartitionStatus is one segment on one partition.
type PartitionStatus struct {
	App        string    `json:"app"`
	Segment    string    `json:"segment"`
	Size       int       `json:"size"`
	Complete   bool      `json:"complete"`
	CountsFrom time.Time `json:"counts_from,omitzero"`
	CompleteAt time.Time `json:"complete_at,omitzero"`
	Filling    bool      `json:"filling,omitempty"`
	Fill       *FillInfo `json:"fill,omitempty"`
	Why        string    `json:"why,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// FillInfo is the progress of a fill from the history store: on one
// partition (BeforeOffset is its seam: the input offsets below it come
// from history), or summed over partitions.
type FillInfo struct {
	BeforeOffset *int64    `json:"before_offset,omitempty"`
	Since        time.Time `json:"since,omitzero"` // earliest event time read; zero: all the history
	Devices      int       `json:"devices"`
	Records      int64     `json:"records"`
	// TotalRecords is how many records the store holds for the fill
	// (omitted while unknown).
	TotalRecords int64 `json:"total_records,omitempty"`
}

// statuses returns the statuses of the segments of the apps that want
// accepts, on each partition this instance owns.
func (a *API) statuses(ctx context.Context, want func(app string) bool) (map[int][]PartitionStatus, error) {
	out := map[int][]PartitionStatus{}
	_, err := a.Proc.Each(ctx, func(part int, e *engine.Engine, _ time.Time) {
		sts := []PartitionStatus{}
		for _, st := range e.Statuses() {
			if !want(st.App) {
				continue
			}
			ps := PartitionStatus{App: st.App, Segment: st.Segment, Complete: st.Complete, CountsFrom: st.CountsFrom, CompleteAt: st.CompleteAt, Why: st.Why, Filling: st.Filling}
			if st.Filling {
				before := st.Fill.Before
				ps.Fill = &FillInfo{BeforeOffset: &before, Since: st.Fill.Since, Devices: st.Fill.Devices, Records: st.Fill.Records, TotalRecords: max(st.Fill.Total, 0)}
			}
			if st.Err != nil {
				ps.Error = st.Err.Error()
			} else {
				ps.Size, _ = e.Size(st.App, st.Segment)
			}
			sts = append(sts, ps)
		}
		out[part] = sts
	})
	return out, err
}

func (a *API) localStatuses(_ http.ResponseWriter, r *http.Request) (any, error) {
	app := r.URL.Query().Get("app")
	may, err := a.allowed(r, app)
	if err != nil {
		return nil, err
	}
	sts, err := a.statuses(r.Context(), func(x string) bool { return (app == "" || x == app) && may(x) })
	if err != nil {
		return nil, err
	}
	return map[string]any{"instance": a.Proc.ID(), "partitions": sts}, nil
}

// gather completes what this instance holds (have: partition → answered)
// from the instances that announced the partitions it lacks: ask is
// called once per instance with the partitions wanted from it, and
// returns the partitions it answered for. It returns the partitions
// covered and those missing, in order.
func (a *API) gather(ctx context.Context, have map[int]bool, ask func(ctx context.Context, in Instance, parts []int) ([]int, error)) (covered, missing []int) {
	n := a.Proc.Partitions()
	owners := a.Proc.Owners()
	want := map[string][]int{}
	insts := map[string]Instance{}
	for p := range n {
		if have[p] {
			continue
		}
		in, ok := owners[p]
		if !ok || in.ID == a.Proc.ID() {
			continue
		}
		want[in.ID] = append(want[in.ID], p)
		insts[in.ID] = in
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		got, err := ask(ctx, insts[id], want[id])
		if err != nil {
			a.Proc.log.Warn("ask another instance", "instance", id, "addr", insts[id].Addr, "partitions", want[id], "error", err)
			continue
		}
		for _, p := range got {
			have[p] = true
		}
	}
	for p := range n {
		if have[p] {
			covered = append(covered, p)
		} else {
			missing = append(missing, p)
		}
	}
	return covered, missing
}

// peer calls another instance's API with the caller's token.
func (a *API) peer(ctx context.Context, r *http.Request, in Instance, path string, q url.Values) (*http.Response, error) {
	u := strings.TrimRight(in.Addr, "/") + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	c := a.Client
	if c == nil {
		c = peerClient
	}
	return c.Do(req)
}

var peerClient = &http.Client{Timeout: 10 * time.Second}

// peerError reads a failed peer answer.
func peerError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
}

func (a *API) info(r *http.Request, defs []Definition) ([]SegmentInfo, error) {
	ctx := r.Context()
	apps := map[string]bool{}
	for _, d := range defs {
		apps[d.App] = true
	}
	sts, err := a.statuses(ctx, func(app string) bool { return apps[app] })
	if err != nil {
		return nil, err
	}
	have := map[int]bool{}
	for p := range sts {
		have[p] = true
	}
	app := ""
	if len(apps) == 1 {
		for x := range apps {
			app = x
		}
	}
	covered, missing := a.gather(ctx, have, func(ctx context.Context, in Instance, parts []int) ([]int, error) {
		resp, err := a.peer(ctx, r, in, "/v1/local/statuses", url.Values{"app": {app}})
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, peerError(resp)
		}
		var got struct {
			Partitions map[int][]PartitionStatus `json:"partitions"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			return nil, err
		}
		var ps []int
		for p, st := range got.Partitions {
			if have[p] {
				continue // answered already (a partition on the move)
			}
			sts[p] = st
			ps = append(ps, p)
		}
		return ps, nil
	})

	set, _ := a.Store.Current()
	out := make([]SegmentInfo, len(defs))
	idx := map[string]int{}
	for i, d := range defs {
		out[i] = SegmentInfo{Definition: d, Partitions: covered, MissingPartitions: missing}
		if out[i].Partitions == nil {
			out[i].Partitions = []int{}
		}
		if err := set.Errors[d.App+"/"+d.Name]; err != nil {
			out[i].Error = err.Error()
		}
		idx[d.App+"/"+d.Name] = i
	}
	for _, p := range covered {
		for _, st := range sts[p] {
			i, ok := idx[st.App+"/"+st.Segment]
			if !ok {
				continue
			}
			si := &out[i]
			if st.Error != "" {
				si.Error = st.Error
				continue
			}
			if si.Size == nil {
				si.Size = new(int)
				c := st.Complete
				si.Complete = &c
			}
			*si.Size += st.Size
			if !st.Complete {
				f := false
				si.Complete = &f
				if si.CountsFrom == nil || st.CountsFrom.After(*si.CountsFrom) {
					t := st.CountsFrom
					si.CountsFrom = &t
				}
				if !st.CompleteAt.IsZero() && (si.CompleteAt == nil || st.CompleteAt.After(*si.CompleteAt)) {
					t := st.CompleteAt
					si.CompleteAt = &t
				}
				si.Why = st.Why
			}
			if st.Filling && st.Fill != nil {
				si.Filling = true
				if si.Fill == nil {
					si.Fill = &FillInfo{Since: st.Fill.Since}
				}
				si.Fill.Devices += st.Fill.Devices
				si.Fill.Records += st.Fill.Records
				si.Fill.TotalRecords += st.Fill.TotalRecords
				if st.Fill.Since.Before(si.Fill.Since) {
					si.Fill.Since = st.Fill.Since
				}
			}
		}
	}
	return out, nil
}

func (a *API) list(_ http.ResponseWriter, r *http.Request) (any, error) {
	app := r.URL.Query().Get("app")
	may, err := a.allowed(r, app)
	if err != nil {
		return nil, err
	}
	set, _ := a.Store.Current()
	var defs []Definition
	for _, d := range set.Defs {
		if (app == "" || d.App == app) && may(d.App) {
			defs = append(defs, d)
		}
	}
	infos, err := a.info(r, defs)
	if err != nil {
		return nil, err
	}
	return map[string]any{"version": set.Version, "segments": infos}, nil
}

func (a *API) one(r *http.Request) (Definition, error) {
	app, name := r.PathValue("app"), r.PathValue("name")
	if _, err := a.allowed(r, app); err != nil {
		return Definition{}, err
	}
	d, ok := a.Store.Definition(app, name)
	if !ok {
		return Definition{}, &apiError{http.StatusNotFound, fmt.Sprintf("app %q has no segment %q", app, name)}
	}
	return d, nil
}

func (a *API) get(_ http.ResponseWriter, r *http.Request) (any, error) {
	d, err := a.one(r)
	if err != nil {
		return nil, err
	}
	infos, err := a.info(r, []Definition{d})
	if err != nil {
		return nil, err
	}
	return infos[0], nil
}

// maxBody bounds a segment's request body.
const maxBody = 1 << 20

func (a *API) put(_ http.ResponseWriter, r *http.Request) (any, error) {
	app, name := r.PathValue("app"), r.PathValue("name")
	if _, err := a.allowed(r, app); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "read body: " + err.Error()}
	}
	if len(body) > maxBody {
		return nil, &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxBody)}
	}
	text := string(body)
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		var req struct {
			Text string          `json:"text"`
			Expr json.RawMessage `json:"expr"`
		}
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return nil, &apiError{http.StatusBadRequest, "body: " + err.Error() + ` (send {"text": "..."} or {"expr": {...}})`}
		}
		switch {
		case req.Text != "" && req.Expr != nil:
			return nil, &apiError{http.StatusBadRequest, `body: give "text" or "expr", not both`}
		case req.Expr != nil:
			n, err := segments.UnmarshalNode(req.Expr)
			if err != nil {
				return nil, &apiError{http.StatusBadRequest, "expr: " + err.Error()}
			}
			text = segments.Format(n)
		default:
			text = req.Text
		}
	}
	if strings.TrimSpace(text) == "" {
		return nil, &apiError{http.StatusBadRequest, "empty segment: send its text (text/plain) or JSON {\"text\"} / {\"expr\"}"}
	}
	d := Definition{App: app, Name: name, Text: text, UpdatedAt: a.now()}
	var plan *tagplan.Plan
	if a.Plans != nil {
		p, ok := a.Plans(app)
		if !ok {
			return nil, &apiError{http.StatusNotFound, fmt.Sprintf("unknown app %q", app)}
		}
		plan = p
	}
	set, _ := a.Store.Current()
	if _, err := Validate(d, plan, set.Defs); err != nil {
		return nil, &apiError{http.StatusUnprocessableEntity, err.Error()}
	}
	v, _ := json.Marshal(d)
	if err := a.Config.Produce(r.Context(), []bus.Message{{Topic: a.Topic, Key: ConfigKey(app, name), Value: v}}); err != nil {
		return nil, &apiError{http.StatusServiceUnavailable, "store the segment: " + err.Error()}
	}
	stored, ok := a.waitFor(r.Context(), app, name, func(d Definition, ok bool) bool { return ok && d.Text == text })
	if !ok {
		return map[string]any{"stored": true, "definition": d, "note": "not applied by this instance yet"}, nil
	}
	infos, err := a.info(r, []Definition{stored})
	if err != nil {
		return nil, err
	}
	return infos[0], nil
}

func (a *API) del(_ http.ResponseWriter, r *http.Request) (any, error) {
	d, err := a.one(r)
	if err != nil {
		return nil, err
	}
	set, _ := a.Store.Current()
	for _, o := range set.Segs {
		if o.App != d.App || o.Name == d.Name {
			continue
		}
		for _, ref := range segments.Refs(o.Expr) {
			if ref == d.Name {
				return nil, &apiError{http.StatusConflict, fmt.Sprintf("segment %q refers to %q: change it first", o.Name, d.Name)}
			}
		}
	}
	if err := a.Config.Produce(r.Context(), []bus.Message{{Topic: a.Topic, Key: ConfigKey(d.App, d.Name)}}); err != nil {
		return nil, &apiError{http.StatusServiceUnavailable, "delete the segment: " + err.Error()}
	}
	a.waitFor(r.Context(), d.App, d.Name, func(_ Definition, ok bool) bool { return !ok })
	return map[string]any{"deleted": true, "app": d.App, "name": d.Name}, nil
}

// waitFor waits (a few seconds at most) until this instance's store shows
// the change just written.
func (a *API) waitFor(ctx context.Context, app, name string, done func(Definition, bool) bool) (Definition, bool) {
	deadline := time.After(5 * time.Second)
	for {
		_, changed := a.Store.Current()
		d, ok := a.Store.Definition(app, name)
		if done(d, ok) {
			return d, true
		}
		select {
		case <-changed:
		case <-deadline:
			return d, false
		case <-ctx.Done():
			return d, false
		}
	}
}

func (a *API) members(w http.ResponseWriter, r *http.Request) (any, error) {
	d, err := a.one(r)
	if err != nil {
		return nil, err
	}
	// ?partitions=: those of them this instance owns, no forwarding (how
	// instances ask each other).
	var only map[int]bool
	if q := r.URL.Query().Get("partitions"); q != "" {
		ps, err := parseInts(q)
		if err != nil {
			return nil, &apiError{http.StatusBadRequest, "partitions: " + err.Error()}
		}
		only = map[int]bool{}
		for _, p := range ps {
			only[p] = true
		}
	}
	var ids []string
	have := map[int]bool{}
	_, err = a.Proc.Each(r.Context(), func(p int, e *engine.Engine, _ time.Time) {
		if only != nil && !only[p] {
			return
		}
		have[p] = true
		_ = e.Members(d.App, d.Name, func(id string) bool { ids = append(ids, id); return true })
	})
	if err != nil {
		return nil, err
	}
	var covered, missing []int
	if only != nil {
		for p := range have {
			covered = append(covered, p)
		}
		sort.Ints(covered)
	} else {
		covered, missing = a.gather(r.Context(), have, func(ctx context.Context, in Instance, parts []int) ([]int, error) {
			q := make([]string, len(parts))
			for i, p := range parts {
				q[i] = strconv.Itoa(p)
			}
			resp, err := a.peer(ctx, r, in, "/v1/segments/"+url.PathEscape(d.App)+"/"+url.PathEscape(d.Name)+"/members", url.Values{"partitions": {strings.Join(q, ",")}})
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return nil, peerError(resp)
			}
			got, err := parseInts(resp.Header.Get("Engage-Partitions"))
			if err != nil {
				return nil, err
			}
			var more []string
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				more = append(more, sc.Text())
			}
			if err := sc.Err(); err != nil {
				return nil, err
			}
			for _, p := range got {
				if have[p] {
					return nil, fmt.Errorf("answered partition %d, which another instance answered too", p)
				}
			}
			ids = append(ids, more...)
			return got, nil
		})
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Engage-Partitions", joinInts(covered))
	if len(missing) > 0 {
		w.Header().Set("Engage-Missing-Partitions", joinInts(missing))
	}
	bw := bufio.NewWriter(w)
	for _, id := range ids {
		bw.WriteString(id)
		bw.WriteByte('\n')
	}
	return nil, bw.Flush()
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		x, err := strconv.Atoi(f)
		if err != nil || x < 0 {
			return nil, fmt.Errorf("%q is not a partition number (in %q)", f, s)
		}
		out = append(out, x)
	}
	return out, nil
}

func (a *API) explain(w http.ResponseWriter, r *http.Request) (any, error) {
	d, err := a.one(r)
	if err != nil {
		return nil, err
	}
	device := r.URL.Query().Get("device")
	if device == "" {
		return nil, &apiError{http.StatusBadRequest, "give the device: ?device=<device id>"}
	}
	// The device's partition: answer here if this instance owns it, or
	// forward to the instance that does.
	if n := a.Proc.Partitions(); n > 0 && r.URL.Query().Get("local") == "" {
		p := kafkabus.KeyPartition([]byte(d.App+"/"+device), n)
		if !slices.Contains(a.Proc.owned(), p) {
			in, ok := a.Proc.Owners()[p]
			if !ok || in.ID == a.Proc.ID() {
				return nil, &apiError{http.StatusServiceUnavailable, fmt.Sprintf("device %q is on partition %d, which no instance answers for now (moving between instances?): try again", device, p)}
			}
			q := r.URL.Query()
			q.Set("local", "1")
			resp, err := a.peer(r.Context(), r, in, "/v1/segments/"+url.PathEscape(d.App)+"/"+url.PathEscape(d.Name)+"/explain", q)
			if err != nil {
				return nil, &apiError{http.StatusBadGateway, fmt.Sprintf("device %q is on partition %d, owned by instance %s at %s: %v", device, p, in.ID, in.Addr, err)}
			}
			defer resp.Body.Close()
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			w.WriteHeader(resp.StatusCode)
			_, err = io.Copy(w, resp.Body)
			return nil, err
		}
	}
	var found *engine.Explanation
	var ferr error
	parts, err := a.Proc.Each(r.Context(), func(_ int, e *engine.Engine, now time.Time) {
		if found != nil {
			return
		}
		x, err := e.Explain(d.App, d.Name, device, now)
		if err != nil {
			ferr = err
			return
		}
		if x.Known {
			found = x
		}
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		if ferr != nil {
			return nil, &apiError{http.StatusUnprocessableEntity, ferr.Error()}
		}
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("device %q of app %q has sent nothing the app's segments read (partitions searched: %v)", device, d.App, parts)}
	}
	return map[string]any{"app": found.App, "segment": found.Segment, "device_id": found.DeviceID, "time": found.Time, "member": found.Member,
		"value": found.Value, "clauses": clauseJSON(found.Root), "history": found.History, "text": found.String(), "partitions": parts}, nil
}

func clauseJSON(c *engine.Clause) map[string]any {
	if c == nil {
		return nil
	}
	m := map[string]any{"clause": c.Text, "value": c.Value}
	if c.Detail != "" {
		m["detail"] = c.Detail
	}
	if !c.Next.IsZero() {
		m["next_change"] = c.Next
	}
	if len(c.Args) > 0 {
		args := make([]map[string]any, len(c.Args))
		for i, a := range c.Args {
			args[i] = clauseJSON(a)
		}
		m["args"] = args
	}
	return m
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now().UTC()
}
