package collector

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Browsers (CORS). A web page may call the collector from another origin
// when the collector's answers grant it: Segment's analytics.js sends every
// call with an Authorization header, so the browser first asks with a
// preflight (OPTIONS), and reads no answer that does not name the page's
// origin (or "*") in Access-Control-Allow-Origin.
//
// The choice, per app (App.Origins, the apps file's origins):
//
//   - Not set: the tracking endpoints (/v1/tags, Segment's calls, the
//     settings) answer any origin with "*". A write key ships inside every
//     page that uses it and grants nothing but sending data, which any
//     client that has the key can do without a browser; refusing browsers
//     would protect nothing. /v1/inapp answers no origin: it returns a
//     device's messages, and a collector reachable only on a private network
//     must not let any page that one of its users opens read them.
//   - Set: the origins listed, on every endpoint, "*" for any. A request from
//     a browser (it carries an Origin header) on a page of another origin is
//     refused with 403 origin_not_allowed, so that other sites' pages cannot
//     send with the app's keys (a client outside a browser can still claim
//     any origin: this is not authentication).
//
// Credentials (cookies) are never allowed: the write key is the only
// authentication. A preflight is answered before authentication (a browser
// sends no Authorization with it) and without reading anything: it is
// granted when some app allows its origin on that endpoint, and the request
// that follows is checked against its own app (checkOrigin).

// corsClass is a group of endpoints with the same default.
type corsClass int

const (
	classTracking corsClass = iota // POST /v1/tags, Segment's calls, GET the settings
	classInApp                     // GET /v1/inapp
	numClasses
)

const (
	// corsAllowHeaders are the request headers the collector reads, and
	// X-Retry-Count that analytics.js adds to its retries.
	corsAllowHeaders = "Content-Type, Authorization, X-Write-Key, Content-Encoding, X-Sent-At, X-Retry-Count"
	// corsMaxAge is how long a browser may keep a preflight's answer, in
	// seconds: 2 hours, the most Chromium keeps.
	corsMaxAge = "7200"
	// corsExposeHeaders are the answer's headers a page may read beyond the
	// safelisted ones: analytics.js waits as Retry-After says.
	corsExposeHeaders = "Retry-After"
)

// originSet is which origins are allowed.
type originSet struct {
	any  bool
	list map[string]bool
}

func (o originSet) allows(origin string) bool { return o.any || o.list[origin] }

func (o *originSet) add(p originSet) {
	o.any = o.any || p.any
	for k := range p.list {
		if o.list == nil {
			o.list = map[string]bool{}
		}
		o.list[k] = true
	}
}

// parseOrigins checks an app's origins and returns what each class of
// endpoint allows.
func parseOrigins(origins []string) ([numClasses]originSet, error) {
	var out [numClasses]originSet
	if len(origins) == 0 {
		out[classTracking].any = true
		return out, nil
	}
	var set originSet
	for _, o := range origins {
		n, err := normalizeOrigin(o)
		if err != nil {
			return out, err
		}
		if n == "*" {
			set.any = true
			continue
		}
		if set.list == nil {
			set.list = map[string]bool{}
		}
		set.list[n] = true
	}
	for c := range out {
		out[c] = set
	}
	return out, nil
}

// normalizeOrigin returns an origin as browsers send it in the Origin
// header: scheme://host[:port], lower case, without the scheme's default
// port; or "*".
func normalizeOrigin(o string) (string, error) {
	o = strings.TrimSpace(o)
	switch {
	case o == "*":
		return o, nil
	case o == "":
		return "", fmt.Errorf("origins: an empty origin")
	case strings.EqualFold(o, "null"):
		return "", fmt.Errorf(`origins: "null" (what sandboxed frames and local files send) cannot be listed: any page can send it; use "*" to allow every origin`)
	case strings.Contains(o, "*"):
		return "", fmt.Errorf("origins: %q: no wildcards but \"*\" alone (every origin); list each origin", o)
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("origins: %q is not an origin: write scheme://host[:port], such as https://www.example.com", o)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("origins: %q: an origin is scheme://host[:port], without user, path, query or fragment", o)
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname())
	port := u.Port()
	if scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}

// grant writes the headers that let a page of origin read the answer, when
// set allows it.
func grant(h http.Header, origin string, set originSet) bool {
	if !set.allows(origin) {
		return false
	}
	if set.any {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	return true
}

// cors wraps an endpoint of class c. Until the request's app is known, an
// answer carries the grant that some app gives its origin: a page whose key
// is wrong reads its 401, and a refusal before authentication (415, 503) is
// readable as well.
func (s *Server) cors(c corsClass, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); origin != "" {
			grant(w.Header(), origin, s.apps.origins[c])
		}
		h(w, r)
	}
}

// checkOrigin checks a browser's request against its app's origins once the
// app is known. It answers a refusal itself (403, and the connection is
// closed: the body is not read when it has not been).
func (s *Server) checkOrigin(w http.ResponseWriter, r *http.Request, app *App, c corsClass) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser's cross-origin request
	}
	h := w.Header()
	h.Del("Access-Control-Allow-Origin")
	h.Del("Access-Control-Expose-Headers")
	if grant(h, origin, app.origins[c]) {
		return true
	}
	noBody(w)
	what := "send with"
	if c == classInApp {
		what = "read the in-app messages of"
	}
	writeError(w, http.StatusForbidden, "origin_not_allowed", "pages of origin %.200q may not %s app %q: list the origin under the app's origins in the apps file", origin, what, app.ID)
	return false
}

// preflight answers a browser's OPTIONS before a cross-origin request of
// method on an endpoint of class c, before authentication and without
// reading anything.
func (s *Server) preflight(c corsClass, method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			noBody(w) // a preflight has no body: whatever came is not read
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" || r.Header.Get("Access-Control-Request-Method") == "" {
			// Not a preflight: say what the path takes.
			h.Set("Allow", method+", OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if !grant(h, origin, s.apps.origins[c]) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		h.Set("Access-Control-Allow-Methods", method)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
	}
}
