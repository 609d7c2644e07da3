package processor

import (
	"bufio"
	"bytes"
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
	"sync"
	"time"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/apierror"
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
// configuration topic) with the cluster credential (never the caller's
// token: the instance called checks it, and asks only for the apps it
// may read):
//
//	GET    /v1/local/statuses?apps=A,B               per partition, sizes and statuses of this instance's partitions
//	GET    /v1/segments/{app}/{name}/members?partitions=0,3   members of those of the partitions this instance owns
//	GET    /v1/segments/{app}/{name}/explain?device=D&local=1 no forwarding
//
// Those three answer the cluster credential only, and the others a user's
// token only. What a peer answers is bounded (PeerMaxBytes, PeerTimeout)
// and checked (peer.go).
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
	// Tokens are the users' bearer tokens and the apps each may manage
	// (nil: none).
	Tokens *apiauth.Tokens
	// Cluster authenticates the calls between instances (nil: this
	// instance asks no other and answers none).
	Cluster *apiauth.Cluster
	Now     func() time.Time
	// Client calls the other instances (nil: NewPeerClient with
	// DefaultPeerAllow).
	Client *http.Client
	// PeerTimeout bounds each request to another instance (0:
	// DefaultPeerTimeout); PeerMaxBytes each answer (0:
	// DefaultPeerMaxBytes).
	PeerTimeout  time.Duration
	PeerMaxBytes int64
}

// apiErr is an error answered with its status and code (docs/processor.md
// lists the codes).
func apiErr(status int, code, msg string) *apierror.Error {
	return &apierror.Error{Status: status, Detail: apierror.Detail{Code: code, Message: msg}}
}

func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/segments", a.wrap(a.list))
	mux.HandleFunc("GET /v1/segments/{app}/{name}", a.wrap(a.get))
	mux.HandleFunc("PUT /v1/segments/{app}/{name}", a.wrap(a.put))
	mux.HandleFunc("DELETE /v1/segments/{app}/{name}", a.wrap(a.del))
	mux.HandleFunc("GET /v1/segments/{app}/{name}/members", a.wrap(a.members))
	mux.HandleFunc("GET /v1/segments/{app}/{name}/explain", a.wrap(a.explain))
	mux.HandleFunc("GET /v1/local/statuses", a.wrap(a.localStatuses))
	return apierror.Routes(mux)
}

func (a *API) wrap(fn func(w http.ResponseWriter, r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The answer to another instance is signed: it is held until
		// complete, then sent with its signature.
		if apiauth.IsPeer(r) && a.Cluster != nil && a.Cluster.Verify(r) == nil {
			rw := w
			held := &heldResponse{header: rw.Header(), status: http.StatusOK}
			defer func() {
				a.Cluster.SignResponse(r, held.status, rw.Header(), held.body.Bytes())
				rw.WriteHeader(held.status)
				_, _ = rw.Write(held.body.Bytes())
			}()
			w = held
		}
		v, err := fn(w, r)
		if err != nil {
			var ae *apierror.Error
			if !errors.As(err, &ae) {
				ae = apiErr(http.StatusInternalServerError, "internal", err.Error())
			}
			if ae.Status == http.StatusUnauthorized && !strings.HasPrefix(r.URL.Path, "/v1/local/") {
				w.Header().Set("WWW-Authenticate", `Bearer realm="engage"`)
			}
			apierror.Write(w, ae.Status, ae.Detail)
			return
		}
		if v == nil {
			return // streamed
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
}

// heldResponse holds an answer until it is complete.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
	wrote  bool
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(status int) {
	if !h.wrote {
		h.status, h.wrote = status, true
	}
}

func (h *heldResponse) Write(b []byte) (int, error) {
	h.wrote = true
	return h.body.Write(b)
}

// allowed checks a user's bearer token against the app ("" : any app the
// token has, for listing); it returns the apps the token covers. The
// cluster credential is refused: it is for the calls between instances.
func (a *API) allowed(r *http.Request, app string) (func(string) bool, error) {
	if apiauth.IsPeer(r) {
		return nil, apiErr(http.StatusUnauthorized, "unauthorized", "the cluster credential is for the calls between instances: this endpoint needs a user's bearer token")
	}
	tok := apiauth.Bearer(r)
	if tok == "" {
		return nil, apiErr(http.StatusUnauthorized, "unauthorized", "missing bearer token: send Authorization: Bearer <token>")
	}
	// Looked up by its hash: the time taken does not depend on how much
	// of a guessed token is right.
	sc, ok := a.Tokens.Lookup(tok)
	if !ok {
		return nil, apiErr(http.StatusUnauthorized, "unauthorized", "unknown bearer token")
	}
	if app != "" && !sc.May(app) {
		return nil, apiErr(http.StatusForbidden, "forbidden", fmt.Sprintf("this token may not manage app %q", app)).WithParam("app")
	}
	return sc.May, nil
}

// fromPeer checks the cluster credential of a call from another instance.
// A user's token is refused: these answers are not scoped to apps by a
// token, the instance that was called checked the user's.
func (a *API) fromPeer(r *http.Request) error {
	if apiauth.Bearer(r) != "" {
		return apiErr(http.StatusForbidden, "forbidden", "this call is for other engage process instances only (cluster credential): user tokens are refused; ask /v1/segments, which covers every partition")
	}
	if a.Cluster == nil {
		return apiErr(http.StatusUnauthorized, "unauthorized", "this instance has no cluster secret (-api.cluster-secret): it answers no other instance")
	}
	if err := a.Cluster.Verify(r); err != nil {
		a.Proc.log.Warn("a call between instances refused", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
		return apiErr(http.StatusUnauthorized, "unauthorized", err.Error())
	}
	return nil
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
	// PeerErrors say why other instances did not answer for some of them.
	PeerErrors []string `json:"peer_errors,omitempty"`
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

// localStatuses answers another instance: ?apps=A,B (the apps the
// caller's user may read, checked by the caller).
func (a *API) localStatuses(_ http.ResponseWriter, r *http.Request) (any, error) {
	if err := a.fromPeer(r); err != nil {
		return nil, err
	}
	apps := map[string]bool{}
	for _, x := range splitComma(r.URL.Query().Get("apps")) {
		apps[x] = true
	}
	if len(apps) == 0 {
		return nil, apiErr(http.StatusBadRequest, "missing_param", "give the apps: ?apps=A,B").WithParam("apps")
	}
	sts, err := a.statuses(r.Context(), func(x string) bool { return apps[x] })
	if err != nil {
		return nil, err
	}
	return statusesAnswer{Instance: a.Proc.ID(), Partitions: sts}, nil
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// gather completes what this instance holds (have: partition → answered)
// from the instances that announced the partitions it lacks: fetch is
// called once per instance, concurrently, with the partitions wanted from
// it; merge then takes each result in turn (in the order of the
// instances' ids) and returns the partitions it answered for, or why the
// answer is refused. It returns the partitions covered and those missing,
// in order, and an error for each instance that did not answer, naming it
// and its partitions.
func (a *API) gather(ctx context.Context, have map[int]bool, fetch func(ctx context.Context, in Instance, parts []int) (any, error),
	merge func(in Instance, parts []int, v any) ([]int, error)) (covered, missing []int, errs []string) {
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
	if a.Cluster == nil && len(ids) > 0 {
		errs = append(errs, "this instance has no cluster secret (-api.cluster-secret): it does not ask the instances that own the missing partitions")
		ids = nil
	}
	type result struct {
		v   any
		err error
	}
	results := make([]result, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := fetch(ctx, insts[id], want[id])
			results[i] = result{v, err}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		in, parts := insts[id], want[id]
		err := results[i].err
		var got []int
		if err == nil {
			got, err = merge(in, parts, results[i].v)
		}
		if err != nil {
			a.Proc.log.Warn("ask another instance", "instance", in.ID, "addr", in.Addr, "partitions", parts, "err", err)
			errs = append(errs, fmt.Sprintf("instance %s at %s, partitions %s: %v", in.ID, in.Addr, joinInts(parts), err))
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
	return covered, missing, errs
}

func intSet(v []int) map[int]bool {
	m := make(map[int]bool, len(v))
	for _, x := range v {
		m[x] = true
	}
	return m
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
	// Other instances are asked for the apps of defs only: those the
	// caller's token may read.
	names := make([]string, 0, len(apps))
	for x := range apps {
		names = append(names, x)
	}
	sort.Strings(names)
	var covered, missing []int
	var errs []string
	if len(names) > 0 {
		covered, missing, errs = a.gather(ctx, have, func(ctx context.Context, in Instance, parts []int) (any, error) {
			status, body, _, err := a.peerRequest(ctx, in, "/v1/local/statuses", url.Values{"apps": {strings.Join(names, ",")}}, a.peerMaxBytes())
			if err != nil {
				return nil, err
			}
			if status != http.StatusOK {
				return nil, peerStatusError(status, body)
			}
			var got statusesAnswer
			if err := decodeStrict(body, &got); err != nil {
				return nil, err
			}
			if err := checkStatuses(&got, in, intSet(parts), apps); err != nil {
				return nil, err
			}
			return &got, nil
		}, func(_ Instance, _ []int, v any) ([]int, error) {
			got := v.(*statusesAnswer)
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
	}

	set, _ := a.Store.Current()
	out := make([]SegmentInfo, len(defs))
	idx := map[string]int{}
	for i, d := range defs {
		out[i] = SegmentInfo{Definition: d, Partitions: covered, MissingPartitions: missing, PeerErrors: errs}
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

// one returns the segment of the path, for a user whose token may manage
// its app, or (peer) for another instance.
func (a *API) one(r *http.Request, peer bool) (Definition, error) {
	app, name := r.PathValue("app"), r.PathValue("name")
	if peer {
		if err := a.fromPeer(r); err != nil {
			return Definition{}, err
		}
	} else if _, err := a.allowed(r, app); err != nil {
		return Definition{}, err
	}
	d, ok := a.Store.Definition(app, name)
	if !ok {
		return Definition{}, apiErr(http.StatusNotFound, "unknown_segment", fmt.Sprintf("app %q has no segment %q", app, name))
	}
	return d, nil
}

func (a *API) get(_ http.ResponseWriter, r *http.Request) (any, error) {
	d, err := a.one(r, false)
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
		return nil, apiErr(http.StatusBadRequest, "unreadable_body", "read body: "+err.Error())
	}
	if len(body) > maxBody {
		return nil, apiErr(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body over %d bytes", maxBody))
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
			return nil, apiErr(http.StatusBadRequest, "invalid_body", "body: "+err.Error()+` (send {"text": "..."} or {"expr": {...}})`)
		}
		switch {
		case req.Text != "" && req.Expr != nil:
			return nil, apiErr(http.StatusBadRequest, "invalid_body", `body: give "text" or "expr", not both`)
		case req.Expr != nil:
			n, err := segments.UnmarshalNode(req.Expr)
			if err != nil {
				return nil, apiErr(http.StatusBadRequest, "invalid_segment", "expr: "+err.Error())
			}
			text = segments.Format(n)
		default:
			text = req.Text
		}
	}
	if strings.TrimSpace(text) == "" {
		return nil, apiErr(http.StatusBadRequest, "invalid_body", "empty segment: send its text (text/plain) or JSON {\"text\"} / {\"expr\"}")
	}
	d := Definition{App: app, Name: name, Text: text, UpdatedAt: a.now()}
	var plan *tagplan.Plan
	if a.Plans != nil {
		p, ok := a.Plans(app)
		if !ok {
			return nil, apiErr(http.StatusNotFound, "unknown_app", fmt.Sprintf("unknown app %q", app)).WithParam("app")
		}
		plan = p
	}
	set, _ := a.Store.Current()
	if _, err := Validate(d, plan, set.Defs); err != nil {
		return nil, apiErr(http.StatusUnprocessableEntity, "invalid_segment", err.Error())
	}
	v, _ := json.Marshal(d)
	if err := a.Config.Produce(r.Context(), []bus.Message{{Topic: a.Topic, Key: ConfigKey(app, name), Value: v}}); err != nil {
		return nil, apiErr(http.StatusServiceUnavailable, "kafka_unavailable", "store the segment: "+err.Error())
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
	d, err := a.one(r, false)
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
				return nil, apiErr(http.StatusConflict, "segment_in_use", fmt.Sprintf("segment %q refers to %q: change it first", o.Name, d.Name))
			}
		}
	}
	if err := a.Config.Produce(r.Context(), []bus.Message{{Topic: a.Topic, Key: ConfigKey(d.App, d.Name)}}); err != nil {
		return nil, apiErr(http.StatusServiceUnavailable, "kafka_unavailable", "delete the segment: "+err.Error())
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
	// ?partitions=: those of them this instance owns, no forwarding (how
	// instances ask each other).
	peer := r.URL.Query().Has("partitions")
	d, err := a.one(r, peer)
	if err != nil {
		return nil, err
	}
	var only map[int]bool
	if peer {
		ps, err := parseInts(r.URL.Query().Get("partitions"))
		if err != nil {
			return nil, apiErr(http.StatusBadRequest, "invalid_param", "partitions: "+err.Error()).WithParam("partitions")
		}
		only = intSet(ps)
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
	var errs []string
	if only != nil {
		for p := range have {
			covered = append(covered, p)
		}
		sort.Ints(covered)
	} else {
		n := a.Proc.Partitions()
		covered, missing, errs = a.gather(r.Context(), have, func(ctx context.Context, in Instance, parts []int) (any, error) {
			status, body, header, err := a.peerRequest(ctx, in, "/v1/segments/"+url.PathEscape(d.App)+"/"+url.PathEscape(d.Name)+"/members",
				url.Values{"partitions": {joinInts(parts)}}, a.peerMaxBytes())
			if err != nil {
				return nil, err
			}
			if status != http.StatusOK {
				return nil, peerStatusError(status, body)
			}
			got, more, err := checkMembers(header, body, d.App, n, intSet(parts))
			if err != nil {
				return nil, err
			}
			return memberAnswer{got, more}, nil
		}, func(_ Instance, _ []int, v any) ([]int, error) {
			m := v.(memberAnswer)
			for _, p := range m.parts {
				if have[p] {
					return nil, fmt.Errorf("answered partition %d, which another instance answered too", p)
				}
			}
			ids = append(ids, m.ids...)
			return m.parts, nil
		})
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Engage-Partitions", joinInts(covered))
	if len(missing) > 0 {
		w.Header().Set("Engage-Missing-Partitions", joinInts(missing))
	}
	if len(errs) > 0 {
		w.Header().Set("Engage-Peer-Errors", clean(strings.Join(errs, "; "), 4096))
	}
	bw := bufio.NewWriter(w)
	for _, id := range ids {
		bw.WriteString(id)
		bw.WriteByte('\n')
	}
	return nil, bw.Flush()
}

type memberAnswer struct {
	parts []int
	ids   []string
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
	local := r.URL.Query().Has("local") // another instance asks: no forwarding
	d, err := a.one(r, local)
	if err != nil {
		return nil, err
	}
	device := r.URL.Query().Get("device")
	if device == "" {
		return nil, apiErr(http.StatusBadRequest, "missing_param", "give the device: ?device=<device id>").WithParam("device")
	}
	if err := checkDeviceID(device); err != nil {
		return nil, apiErr(http.StatusBadRequest, "invalid_param", "device: "+err.Error()).WithParam("device")
	}
	// The device's partition: answer here if this instance owns it, or
	// forward to the instance that does.
	if n := a.Proc.Partitions(); n > 0 && !local {
		p := kafkabus.KeyPartition([]byte(d.App+"/"+device), n)
		if !slices.Contains(a.Proc.owned(), p) {
			in, ok := a.Proc.Owners()[p]
			if !ok || in.ID == a.Proc.ID() {
				return nil, apiErr(http.StatusServiceUnavailable, "partition_unavailable", fmt.Sprintf("device %q is on partition %d, which no instance answers for now (moving between instances?): try again", device, p))
			}
			x, err := a.explainElsewhere(r.Context(), in, d, device, n)
			if err != nil {
				var ae *apierror.Error
				if errors.As(err, &ae) {
					return nil, ae
				}
				a.Proc.log.Warn("ask another instance", "instance", in.ID, "addr", in.Addr, "partitions", []int{p}, "err", err)
				return nil, apiErr(http.StatusBadGateway, "peer_failed", fmt.Sprintf("device %q is on partition %d, owned by instance %s at %s: %v", device, p, in.ID, in.Addr, err))
			}
			return x, nil
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
			return nil, apiErr(http.StatusUnprocessableEntity, "explain_failed", ferr.Error())
		}
		return nil, apiErr(http.StatusNotFound, "unknown_device", fmt.Sprintf("device %q of app %q has sent nothing the app's segments read (partitions searched: %v)", device, d.App, parts))
	}
	return &ExplainAnswer{App: found.App, Segment: found.Segment, DeviceID: found.DeviceID, Time: found.Time, Member: found.Member,
		Value: found.Value, Clauses: clauseJSON(found.Root), History: found.History, Text: found.String(), Partitions: parts}, nil
}

// explainElsewhere asks the owner of the device's partition. Its answer
// is checked: an explanation of the device asked, or an error message
// with the status 404, 422 or 503 (passed on as an *apierror.Error).
func (a *API) explainElsewhere(ctx context.Context, in Instance, d Definition, device string, n int) (*ExplainAnswer, error) {
	if a.Cluster == nil {
		return nil, errors.New("this instance has no cluster secret (-api.cluster-secret): it does not ask other instances")
	}
	status, body, _, err := a.peerRequest(ctx, in, "/v1/segments/"+url.PathEscape(d.App)+"/"+url.PathEscape(d.Name)+"/explain",
		url.Values{"device": {device}, "local": {"1"}}, min(a.peerMaxBytes(), maxExplainBytes))
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusOK:
		var x ExplainAnswer
		if err := decodeStrict(body, &x); err != nil {
			return nil, err
		}
		if err := checkExplain(&x, d.App, d.Name, device, n); err != nil {
			return nil, err
		}
		return &x, nil
	case http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusServiceUnavailable:
		e, err := apierror.DecodeBytes(body)
		if err != nil {
			return nil, peerStatusError(status, body)
		}
		return nil, &apierror.Error{Status: status, Detail: apierror.Detail{Code: clean(e.Code, 64), Message: clean(e.Message, 4096), Param: clean(e.Param, 64)}}
	}
	return nil, peerStatusError(status, body)
}

func clauseJSON(c *engine.Clause) *ClauseJSON {
	if c == nil {
		return nil
	}
	m := &ClauseJSON{Clause: c.Text, Value: c.Value, Detail: c.Detail}
	if !c.Next.IsZero() {
		t := c.Next
		m.NextChange = &t
	}
	for _, a := range c.Args {
		m.Args = append(m.Args, clauseJSON(a))
	}
	return m
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now().UTC()
}
