package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/pipeline/apiauth"
	"github.com/openengage/engage/pipeline/apierror"
	chstore "github.com/openengage/engage/sinks/clickhouse"
)

// API answers the analytics endpoints from ClickHouse. It is safe for
// concurrent use; it holds no per-request state.
type API struct {
	conn   driver.Conn
	db     string
	cfg    Config
	log    *slog.Logger
	plans  PlanSource
	routes map[string]endpoint
}

// endpoint answers one route for one app with validated parameters.
type endpoint struct {
	params []string // the query parameters it accepts
	serve  func(ctx context.Context, app string, q *query) (any, error)
}

var dbRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// New returns the API over the database db (as migrated by
// sinks/clickhouse). plans gives each app's tag plan for /coverage; nil
// means no app has one. log may be nil.
func New(conn driver.Conn, db string, cfg Config, log *slog.Logger, plans PlanSource) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, errors.New("analytics: no ClickHouse connection")
	}
	if !dbRE.MatchString(db) {
		return nil, fmt.Errorf("analytics: database name %q: use letters, digits and _", db)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{conn: conn, db: db, cfg: cfg, log: log, plans: plans}
	a.routes = map[string]endpoint{
		"active":      {[]string{"from", "to", "period"}, a.active},
		"new-devices": {[]string{"from", "to"}, a.newDevices},
		"sessions":    {[]string{"from", "to"}, a.sessions},
		"retention":   {[]string{"from", "to", "days"}, a.retention},
		"funnel":      {[]string{"from", "to", "steps", "window"}, a.funnel},
		"top":         {[]string{"from", "to", "kind", "limit"}, a.top},
		"jobs":        {[]string{"from", "to", "name"}, a.jobs},
		"app-info":    {[]string{"key", "limit"}, a.appInfo},
		"coverage":    {[]string{"from", "to"}, a.coverage},

		campaignDecisions: {[]string{"from", "to"}, a.campaignDecisions},
		deviceDecisions:   {nil, a.deviceDecisions},
		campaignStats:     {[]string{"from", "to", "goal", "within"}, a.campaignStats},
	}
	return a, nil
}

// Handler returns the HTTP handler of every route under /v1/apps/.
func (a *API) Handler() http.Handler { return http.HandlerFunc(a.serve) }

// Names of the campaign routes in API.routes. They hold a '/', which the
// one-segment form /v1/apps/{app}/{endpoint} cannot (it is matched on the
// escaped path), so that only their own paths reach them.
const (
	campaignDecisions = "campaigns/{campaign}/decisions"
	deviceDecisions   = "campaigns/{campaign}/devices/{device}/decisions"
	campaignStats     = "campaigns/{campaign}/stats"
)

// route splits the path into the app, the endpoint's name and the path's
// arguments: /v1/apps/{app}/{endpoint},
// /v1/apps/{app}/campaigns/{campaign}/decisions,
// /v1/apps/{app}/campaigns/{campaign}/stats and
// /v1/apps/{app}/campaigns/{campaign}/devices/{device}/decisions. It reads
// the escaped path, so that an app id (or a device id) may hold any
// character, '/' and ".." included, when percent-encoded; http.ServeMux
// would clean such paths and redirect.
func route(r *http.Request) (app, endpoint string, args map[string]string, ok bool) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/apps/")
	if !ok {
		return "", "", nil, false
	}
	seg := strings.Split(rest, "/")
	unescape := func(i int) string {
		v, err := url.PathUnescape(seg[i])
		if err != nil {
			ok = false
		}
		return v
	}
	switch {
	case len(seg) == 2:
		app, endpoint = unescape(0), seg[1]
	case len(seg) == 4 && seg[1] == "campaigns" && seg[3] == "decisions":
		app, endpoint, args = unescape(0), campaignDecisions, map[string]string{"campaign": unescape(2)}
	case len(seg) == 4 && seg[1] == "campaigns" && seg[3] == "stats":
		app, endpoint, args = unescape(0), campaignStats, map[string]string{"campaign": unescape(2)}
	case len(seg) == 6 && seg[1] == "campaigns" && seg[3] == "devices" && seg[5] == "decisions":
		app, endpoint, args = unescape(0), deviceDecisions, map[string]string{"campaign": unescape(2), "device": unescape(4)}
	default:
		return "", "", nil, false
	}
	return app, endpoint, args, ok
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	app, name, args, ok := route(r)
	if !ok {
		writeError(w, &apiError{http.StatusNotFound, "not_found", "no such route: use /v1/apps/{app}/{endpoint} or /v1/apps/{app}/" + deviceDecisions + "; see docs/analytics.md", ""})
		return
	}
	ep, ok := a.routes[name]
	if !ok {
		writeError(w, &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint %q: use one of active, new-devices, sessions, retention, funnel, top, jobs, app-info, coverage, or the routes "+campaignDecisions+", "+campaignStats+" and "+deviceDecisions, clip(name)), ""})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed", r.Method + " not allowed: use GET", ""})
		return
	}
	s, aerr := a.authenticate(r)
	if aerr != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="engage"`)
		writeError(w, aerr)
		return
	}
	if msg := checkText(app, maxAppLen); msg != "" {
		writeError(w, badParam("app", "app id %s", msg))
		return
	}
	if !s.May(app) {
		writeError(w, &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf("this token may not read app %q", app), "app"})
		return
	}
	if aerr := checkPathArgs(args); aerr != nil {
		writeError(w, aerr)
		return
	}
	q, aerr := parseQuery(r.URL.RawQuery, ep.params)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	q.path = args
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.QueryTimeout)
	defer cancel()
	res, err := ep.serve(ctx, app, q)
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		writeError(w, ae)
		return
	case err != nil && r.Context().Err() != nil:
		a.log.Debug("analytics request abandoned by the client", "endpoint", name, "app", app, "err", err)
		return
	case err != nil:
		status, code, msg := http.StatusInternalServerError, "internal", "query failed; the server log has the details"
		switch {
		case timedOut(ctx, err):
			status, code, msg = http.StatusGatewayTimeout, "timeout", fmt.Sprintf("query took longer than %s: narrow the range", a.timeout(err))
		case chstore.Transient(err):
			// ClickHouse unreachable or overloaded after the connection's
			// retries: the request may succeed later.
			status, code, msg = http.StatusServiceUnavailable, "unavailable", "the analytics store is unavailable; try again later"
			w.Header().Set("Retry-After", "5")
		}
		a.log.Error("analytics query", "endpoint", name, "app", app, "token", s.Name, "err", err)
		writeError(w, &apiError{status, code, msg, ""})
		return
	}
	a.log.Debug("analytics request", "endpoint", name, "app", app, "token", s.Name, "took", time.Since(start))
	writeJSON(w, http.StatusOK, res)
}

func (a *API) authenticate(r *http.Request) (apiauth.Scope, *apiError) {
	tok := apiauth.Bearer(r)
	if tok == "" {
		return apiauth.Scope{}, &apiError{http.StatusUnauthorized, "unauthorized", "missing bearer token: send Authorization: Bearer <token>", ""}
	}
	// Looked up by its hash: the time taken does not depend on how much
	// of a guessed token is right.
	s, ok := a.cfg.Tokens.Lookup(tok)
	if !ok {
		return apiauth.Scope{}, &apiError{http.StatusUnauthorized, "unauthorized", "unknown bearer token", ""}
	}
	return s, nil
}

// timedOut reports whether err ended a query because ctx's deadline
// passed (the driver reports it as a read timeout on its socket, possibly
// before ctx.Err is set) or the server's max_execution_time did.
func timedOut(ctx context.Context, err error) bool {
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return true
	}
	var te *chstore.TimeoutError // the connection's own query timeout
	return errors.As(err, &te) || isTimeout(err)
}

// timeout is the limit err ran into: the connection's query timeout when
// that is what ended it (shorter than the API's), else the API's.
func (a *API) timeout(err error) time.Duration {
	var te *chstore.TimeoutError
	if errors.As(err, &te) && te.After < a.cfg.QueryTimeout {
		return te.After
	}
	return a.cfg.QueryTimeout
}

// isTimeout reports ClickHouse's own "timeout exceeded" (code 159).
func isTimeout(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == 159
}

// apiError is an error answered to the client in the shape of every API
// (pipeline/apierror): {"error":{"code":…,"message":…,"param":…}}.
type apiError struct {
	status  int
	code    string
	message string
	param   string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func badParam(param, format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid_param", param + ": " + fmt.Sprintf(format, args...), param}
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Cache-Control", "no-store")
	apierror.Write(w, e.status, apierror.Detail{Code: e.code, Message: e.message, Param: e.param})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// clip shortens client input echoed in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// queryCtx adds the settings sent with every query: the server refuses
// writes and stops the query at the timeout even if the client is gone.
func (a *API) queryCtx(ctx context.Context) context.Context {
	if a.cfg.ReadonlyUser {
		return ctx
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"readonly":           2,
		"max_execution_time": int(a.cfg.QueryTimeout / time.Second),
	}))
}

// each runs sql with args and calls fn for every row.
func (a *API) each(ctx context.Context, sql string, args []any, fn func(driver.Rows) error) error {
	rows, err := a.conn.Query(a.queryCtx(ctx), sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// table names a table of the database.
func (a *API) table(name string) string { return a.db + "." + name }
