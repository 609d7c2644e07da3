package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/apierror"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/triggers"
)

// CampaignAPI serves the campaigns over HTTP, as `engage campaigns` manages
// them from files: a campaign is the same document, YAML or JSON, checked
// against the app's tag plan and stored segments with every mistake at its
// line and column, and stored in the configuration topic.
//
//	GET    /v1/campaigns?app=A            the stored campaigns (of the apps the token may manage)
//	GET    /v1/campaigns/{app}/{name}     one, with its source
//	PUT    /v1/campaigns/{app}/{name}     check and store (JSON, or YAML with another content type)
//	DELETE /v1/campaigns/{app}/{name}
type CampaignAPI struct {
	Campaigns *Store
	Segments  *processor.Store // the stored segments, to check names and trigger fields
	Config    bus.Producer     // writes the configuration topic
	Topic     string
	Plans     func(app string) (*tagplan.Plan, bool)
	// Tokens are the bearer tokens and the apps each may manage, kept by
	// their SHA-256 (apiauth.ParseTokens; nil: none).
	Tokens *apiauth.Tokens
	Now    func() time.Time
}

// maxCampaignBody bounds a PUT's body.
const maxCampaignBody = 1 << 20

// apiErr is an error answered with its status and code (docs/campaigns.md
// lists the codes).
func apiErr(status int, code, msg string) *apierror.Error {
	return &apierror.Error{Status: status, Detail: apierror.Detail{Code: code, Message: msg}}
}

// Handler returns the API's routes.
func (a *CampaignAPI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/campaigns", a.wrap(a.list))
	mux.HandleFunc("GET /v1/campaigns/{app}/{name}", a.wrap(a.get))
	mux.HandleFunc("PUT /v1/campaigns/{app}/{name}", a.wrap(a.put))
	mux.HandleFunc("DELETE /v1/campaigns/{app}/{name}", a.wrap(a.del))
	return apierror.Routes(mux)
}

func (a *CampaignAPI) wrap(fn func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			var ae *apierror.Error
			if !errors.As(err, &ae) {
				ae = apiErr(http.StatusInternalServerError, "internal", err.Error())
			}
			if ae.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="engage"`)
			}
			apierror.Write(w, ae.Status, ae.Detail)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
}

// allowed checks the bearer token for app ("": any); it returns what the
// token may manage.
func (a *CampaignAPI) allowed(r *http.Request, app string) (func(string) bool, error) {
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

// CampaignInfo is a stored campaign as the API lists it.
type CampaignInfo struct {
	App       string    `json:"app"`
	Name      string    `json:"name"`
	Version   int64     `json:"version"`
	File      string    `json:"file"`
	UpdatedAt time.Time `json:"updated_at"`
	Channel   string    `json:"channel,omitempty"`
	When      string    `json:"when,omitempty"`
	Segments  []string  `json:"segments,omitempty"`
	Exclude   []string  `json:"exclude,omitempty"`
	Source    string    `json:"source,omitempty"` // one campaign: its document as stored
	Error     string    `json:"error,omitempty"`  // why it is not in force
}

func info(st Stored, withSource bool) CampaignInfo {
	ci := CampaignInfo{App: st.App, Name: st.Name, Version: st.Version, File: st.File, UpdatedAt: st.UpdatedAt}
	if withSource {
		ci.Source = st.Source
	}
	c, err := triggers.Parse(st.File, []byte(st.Source))
	if err != nil {
		ci.Error = err.Error()
		return ci
	}
	ci.Channel, ci.When, ci.Segments, ci.Exclude = string(c.What.Channel), string(c.When.Kind), c.Who.Segments, c.Who.Exclude
	return ci
}

func (a *CampaignAPI) list(r *http.Request) (any, error) {
	app := r.URL.Query().Get("app")
	may, err := a.allowed(r, app)
	if err != nil {
		return nil, err
	}
	out := []CampaignInfo{}
	for _, st := range a.Campaigns.Stored() {
		if (app == "" || st.App == app) && may(st.App) {
			out = append(out, info(st, false))
		}
	}
	return map[string]any{"campaigns": out}, nil
}

func (a *CampaignAPI) find(app, name string) (Stored, bool) {
	for _, st := range a.Campaigns.Stored() {
		if st.App == app && st.Name == name {
			return st, true
		}
	}
	return Stored{}, false
}

func (a *CampaignAPI) get(r *http.Request) (any, error) {
	app, name := r.PathValue("app"), r.PathValue("name")
	if _, err := a.allowed(r, app); err != nil {
		return nil, err
	}
	st, ok := a.find(app, name)
	if !ok {
		return nil, apiErr(http.StatusNotFound, "unknown_campaign", fmt.Sprintf("no campaign %q in app %q", name, app))
	}
	return info(st, true), nil
}

func (a *CampaignAPI) put(r *http.Request) (any, error) {
	app, name := r.PathValue("app"), r.PathValue("name")
	if _, err := a.allowed(r, app); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCampaignBody+1))
	if err != nil {
		return nil, apiErr(http.StatusBadRequest, "unreadable_body", "read body: "+err.Error())
	}
	if len(body) > maxCampaignBody {
		return nil, apiErr(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("body over %d bytes", maxCampaignBody))
	}
	file := "request.yaml"
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		file = "request.json"
	}
	c, pos, err := triggers.ParseWithPositions(file, body)
	if err != nil {
		return nil, mistakes("the campaign does not parse", err)
	}
	if c.App != app || c.Name != name {
		return nil, apiErr(http.StatusBadRequest, "campaign_mismatch", fmt.Sprintf("the document is campaign %q of app %q, the path says %q of app %q", c.Name, c.App, name, app))
	}
	env := triggers.Env{Now: a.now(), Segments: map[string]*segments.Segment{}}
	if a.Plans != nil {
		plan, ok := a.Plans(app)
		if !ok {
			return nil, apiErr(http.StatusNotFound, "unknown_app", fmt.Sprintf("unknown app %q (not in the apps file)", app)).WithParam("app")
		}
		env.Plan = plan
	}
	if a.Segments != nil {
		set, _ := a.Segments.Current()
		for _, s := range set.Segs {
			if s.App == app {
				env.Segments[s.Name] = s
			}
		}
	}
	if err := triggers.Check(c, pos, env); err != nil {
		return nil, mistakes("the campaign has mistakes", err)
	}
	st := Stored{App: app, Name: name, File: file, Source: string(body), UpdatedAt: a.now().UTC()}
	v, _ := json.Marshal(st)
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.Config.Produce(ctx, []bus.Message{{Topic: a.Topic, Key: CampaignKey(app, name), Value: v}}); err != nil {
		return nil, apiErr(http.StatusServiceUnavailable, "kafka_unavailable", "store the campaign: "+err.Error())
	}
	return map[string]any{"stored": true, "app": app, "name": name, "channel": c.What.Channel, "when": c.When.Kind}, nil
}

func (a *CampaignAPI) del(r *http.Request) (any, error) {
	app, name := r.PathValue("app"), r.PathValue("name")
	if _, err := a.allowed(r, app); err != nil {
		return nil, err
	}
	if _, ok := a.find(app, name); !ok {
		return nil, apiErr(http.StatusNotFound, "unknown_campaign", fmt.Sprintf("no campaign %q in app %q", name, app))
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.Config.Produce(ctx, []bus.Message{{Topic: a.Topic, Key: CampaignKey(app, name)}}); err != nil {
		return nil, apiErr(http.StatusServiceUnavailable, "kafka_unavailable", "delete the campaign: "+err.Error())
	}
	return map[string]any{"deleted": true, "app": app, "name": name}, nil
}

// mistakes is a 400 listing each mistake of err (one a line).
func mistakes(msg string, err error) error {
	var errs []string
	for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			errs = append(errs, line)
		}
	}
	e := apiErr(http.StatusBadRequest, "invalid_campaign", msg)
	e.Errors = errs
	return e
}

func (a *CampaignAPI) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}
