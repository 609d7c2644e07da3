// Package apiauth authenticates the callers of the platform's HTTP APIs:
// bearer tokens scoped to apps, looked up by their SHA-256 (the time a
// lookup takes does not depend on how much of a guessed token is right,
// and the tokens themselves are not kept), and the cluster credential
// with which the instances of one service call each other (an HMAC-SHA256
// of the request under a shared secret, with a timestamp: the secret never
// travels, and a captured request is worthless after a minute).
//
// It imports the standard library only.
package apiauth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"unicode/utf8"
)

const (
	// MinTokenLen is the shortest bearer token accepted.
	MinTokenLen = 16
	// MaxTokenLen bounds a token, configured or sent.
	MaxTokenLen = 1024
	// AllApps in a token's list lets it use every app.
	AllApps = "*"
	// maxAppLen is the tag model's limit on an app id.
	maxAppLen = 128
)

// Scope is what one token may use.
type Scope struct {
	all  bool
	apps map[string]bool
	// Name is the token masked, for logs and errors.
	Name string
}

// May reports whether the token may use app.
func (s Scope) May(app string) bool { return s.all || s.apps[app] }

// All reports whether the token may use every app.
func (s Scope) All() bool { return s.all }

// Tokens holds bearer tokens by their SHA-256. The zero value (or nil)
// knows no token.
type Tokens struct {
	byHash map[[sha256.Size]byte]Scope
}

// Len returns the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byHash)
}

// ParseTokens reads a token list as the -api.tokens flags give it:
// "TOKEN:app1,app2 TOKEN2:*", items separated by white space. flag names
// the flag in errors. Every token must have at least MinTokenLen
// printable ASCII characters and at least one app; no token may appear
// twice. Errors name a token by its position and its masked form, never
// in full.
func ParseTokens(flag, s string) (*Tokens, error) {
	t := &Tokens{byHash: map[[sha256.Size]byte]Scope{}}
	items := strings.Fields(s)
	var errs []error
	for i, item := range items {
		tok, list, ok := strings.Cut(item, ":")
		which := fmt.Sprintf("%s: token %d of %d (%s)", flag, i+1, len(items), Mask(tok))
		if !ok || tok == "" || list == "" {
			errs = append(errs, fmt.Errorf("%s: each item is TOKEN:app1,app2 (or TOKEN:*), items separated by spaces", which))
			continue
		}
		errs = append(errs, t.add(which, tok, strings.Split(list, ","))...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// NewTokens is ParseTokens of tokens given as a map, each with its app
// ids (which may then hold any character, spaces and commas included),
// checked the same way; the tokens are numbered in their sorted order.
func NewTokens(flag string, toks map[string][]string) (*Tokens, error) {
	t := &Tokens{byHash: map[[sha256.Size]byte]Scope{}}
	keys := make([]string, 0, len(toks))
	for tok := range toks {
		keys = append(keys, tok)
	}
	sort.Strings(keys)
	var errs []error
	for i, tok := range keys {
		errs = append(errs, t.add(fmt.Sprintf("%s: token %d of %d (%s)", flag, i+1, len(keys), Mask(tok)), tok, toks[tok])...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// add checks one token and its apps and keeps it; which names it in
// errors.
func (t *Tokens) add(which, tok string, apps []string) []error {
	switch {
	case len(tok) < MinTokenLen:
		return []error{fmt.Errorf("%s has %d bytes: tokens need at least %d (e.g. `openssl rand -hex 24`)", which, len(tok), MinTokenLen)}
	case len(tok) > MaxTokenLen:
		return []error{fmt.Errorf("%s has %d bytes, more than %d", which, len(tok), MaxTokenLen)}
	case !printable(tok):
		return []error{fmt.Errorf("%s: use printable ASCII only", which)}
	}
	var errs []error
	sc := Scope{apps: map[string]bool{}, Name: Mask(tok)}
	for _, app := range apps {
		switch {
		case app == AllApps:
			sc.all = true
		case app == "":
			// "a,,b" or "a,": splitList's leniency.
		case len(app) > maxAppLen || !utf8.ValidString(app):
			errs = append(errs, fmt.Errorf("%s: app id %q: at most %d bytes of UTF-8", which, app, maxAppLen))
		default:
			sc.apps[app] = true
		}
	}
	if !sc.all && len(sc.apps) == 0 {
		return append(errs, fmt.Errorf("%s has no apps: list app ids or %q", which, AllApps))
	}
	h := sha256.Sum256([]byte(tok))
	if _, dup := t.byHash[h]; dup {
		return append(errs, fmt.Errorf("%s appears twice: give each token once, with all its apps", which))
	}
	t.byHash[h] = sc
	return errs
}

// Lookup returns the scope of a token.
func (t *Tokens) Lookup(tok string) (Scope, bool) {
	if t == nil || len(tok) > MaxTokenLen {
		return Scope{}, false
	}
	s, ok := t.byHash[sha256.Sum256([]byte(tok))]
	return s, ok
}

// Bearer returns the bearer token of a request ("" without one).
func Bearer(r *http.Request) string {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Mask shows enough of a secret to tell which one is meant, and no more:
// the first 4 characters of one of 16 bytes or more, 2 of a shorter one,
// none under 6 bytes.
func Mask(tok string) string {
	n := 0
	switch {
	case len(tok) >= 16:
		n = 4
	case len(tok) >= 6:
		n = 2
	}
	if !printable(tok[:n]) {
		n = 0
	}
	return tok[:n] + "…"
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
