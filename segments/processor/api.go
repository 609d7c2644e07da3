package processor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/bus"
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
// Sizes, members and explanations come from the partitions this instance
// owns now; every answer lists them ("partitions"), so that a client of
// several instances can add them up.
type API struct {
	Proc   *Processor
	Store  *Store
	Config bus.Producer // writes the configuration topic
	Topic  string       // the configuration topic
	Plans  func(app string) (*tagplan.Plan, bool)
	// Tokens maps bearer tokens to the apps they may manage ("*": all).
	Tokens map[string][]string
	Now    func() time.Time
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
	Why        string     `json:"why,omitempty"`
	Partitions []int      `json:"partitions"`
}

func (a *API) info(ctx context.Context, defs []Definition) ([]SegmentInfo, error) {
	set, _ := a.Store.Current()
	out := make([]SegmentInfo, len(defs))
	idx := map[string]int{}
	for i, d := range defs {
		out[i] = SegmentInfo{Definition: d}
		if err := set.Errors[d.App+"/"+d.Name]; err != nil {
			out[i].Error = err.Error()
		}
		idx[d.App+"/"+d.Name] = i
	}
	parts, err := a.Proc.Each(ctx, func(_ int, e *engine.Engine, _ time.Time) {
		for _, st := range e.Statuses() {
			i, ok := idx[st.App+"/"+st.Segment]
			if !ok {
				continue
			}
			si := &out[i]
			if st.Err != nil {
				si.Error = st.Err.Error()
				continue
			}
			n, _ := e.Size(st.App, st.Segment)
			if si.Size == nil {
				si.Size = new(int)
				c := st.Complete
				si.Complete = &c
			}
			*si.Size += n
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
		}
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Partitions = parts
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
	infos, err := a.info(r.Context(), defs)
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
	infos, err := a.info(r.Context(), []Definition{d})
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
	infos, err := a.info(r.Context(), []Definition{stored})
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
	var ids []string
	parts, err := a.Proc.Each(r.Context(), func(_ int, e *engine.Engine, _ time.Time) {
		_ = e.Members(d.App, d.Name, func(id string) bool { ids = append(ids, id); return true })
	})
	if err != nil {
		return nil, err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Engage-Partitions", strings.Trim(fmt.Sprint(parts), "[]"))
	bw := bufio.NewWriter(w)
	for _, id := range ids {
		bw.WriteString(id)
		bw.WriteByte('\n')
	}
	return nil, bw.Flush()
}

func (a *API) explain(_ http.ResponseWriter, r *http.Request) (any, error) {
	d, err := a.one(r)
	if err != nil {
		return nil, err
	}
	device := r.URL.Query().Get("device")
	if device == "" {
		return nil, &apiError{http.StatusBadRequest, "give the device: ?device=<device id>"}
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
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("device %q of app %q is not on the partitions this instance owns (%v), or has sent nothing the app's segments read", device, d.App, parts)}
	}
	return map[string]any{"app": found.App, "segment": found.Segment, "device_id": found.DeviceID, "time": found.Time, "member": found.Member,
		"value": found.Value, "clauses": clauseJSON(found.Root), "text": found.String(), "partitions": parts}, nil
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
