package mock

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The OAuth 2.0 service-account flow ("Using OAuth 2.0 for Server to Server
// Applications"): the client posts a JWT signed with the account's key to the
// token URI and gets an access token.
const (
	jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// ScopeMessaging and ScopeCloudPlatform are the scopes that allow
	// projects.messages.send.
	ScopeMessaging     = "https://www.googleapis.com/auth/firebase.messaging"
	ScopeCloudPlatform = "https://www.googleapis.com/auth/cloud-platform"
	// DefaultAccessTokenLifetime is how long the access tokens the FCM mock
	// issues are valid, as Google's are.
	DefaultAccessTokenLifetime = time.Hour
	assertionMaxLifetime       = time.Hour
	assertionSkew              = 5 * time.Minute
)

type serviceAccount struct {
	email, project string
	keys           map[string]*rsa.PublicKey // by private_key_id
	revoked        map[string]bool
}

type accessToken struct {
	account *serviceAccount
	scopes  []string
	expiry  time.Time
}

// fcmAuth holds the service accounts and the access tokens issued to them;
// safe for concurrent use.
type fcmAuth struct {
	now      func() time.Time
	lifetime time.Duration

	mu       sync.RWMutex
	accounts map[string]*serviceAccount // by client_email
	tokens   map[string]*accessToken
	grants   int64
}

func (a *fcmAuth) register(project, email, keyID string, pub *rsa.PublicKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sa := a.accounts[email]
	if sa == nil {
		sa = &serviceAccount{email: email, project: project, keys: make(map[string]*rsa.PublicKey), revoked: make(map[string]bool)}
		a.accounts[email] = sa
	}
	sa.keys[keyID] = pub
}

func (a *fcmAuth) revokeKey(email, keyID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	sa := a.accounts[email]
	if sa == nil || sa.keys[keyID] == nil {
		return false
	}
	sa.revoked[keyID] = true
	return true
}

func (a *fcmAuth) expireTokens() {
	a.mu.Lock()
	defer a.mu.Unlock()
	past := a.now().Add(-time.Second)
	for _, t := range a.tokens {
		t.expiry = past
	}
}

// tokenError is an OAuth 2.0 error answer (RFC 6749 section 5.2).
type tokenError struct{ code, description string }

// grant checks a JWT-bearer assertion as Google's token endpoint does and
// issues an access token.
func (a *fcmAuth) grant(form map[string][]string, audience string) (string, *tokenError) {
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if gt := get("grant_type"); gt != jwtBearerGrant {
		return "", &tokenError{"unsupported_grant_type", "Invalid grant_type: " + gt}
	}
	t, err := parseJWT(get("assertion"))
	if err != nil || t.header.Alg != "RS256" {
		return "", &tokenError{"invalid_grant", "Invalid JWT Signature."}
	}
	a.mu.RLock()
	sa := a.accounts[t.str("iss")]
	var keys []*rsa.PublicKey
	if sa != nil {
		for id, k := range sa.keys {
			if (t.header.Kid == "" || t.header.Kid == id) && !sa.revoked[id] {
				keys = append(keys, k)
			}
		}
	}
	a.mu.RUnlock()
	if sa == nil {
		return "", &tokenError{"invalid_grant", "Invalid grant: account not found"}
	}
	if !verifyAny(t, keys) {
		return "", &tokenError{"invalid_grant", "Invalid JWT Signature."}
	}
	if aud := t.str("aud"); aud != audience {
		return "", &tokenError{"invalid_grant", "Invalid JWT: Failed audience check. The right audience is " + audience}
	}
	iat, okIat := t.num("iat")
	exp, okExp := t.num("exp")
	now := a.now()
	if !okIat || !okExp || exp <= iat || time.Duration(exp-iat)*time.Second > assertionMaxLifetime ||
		time.Unix(iat, 0).After(now.Add(assertionSkew)) || time.Unix(exp, 0).Before(now.Add(-assertionSkew)) {
		return "", &tokenError{"invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."}
	}
	scopes := strings.Fields(t.str("scope"))
	if len(scopes) == 0 {
		return "", &tokenError{"invalid_scope", "Invalid OAuth scope or ID token audience provided."}
	}
	tok := "ya29.mock-" + randomHex(24)
	a.mu.Lock()
	for k, v := range a.tokens { // drop tokens expired long ago: bounded memory
		if now.Sub(v.expiry) > time.Hour {
			delete(a.tokens, k)
		}
	}
	a.tokens[tok] = &accessToken{account: sa, scopes: scopes, expiry: now.Add(a.lifetime)}
	a.grants++
	a.mu.Unlock()
	return tok, nil
}

func verifyAny(t *jwt, keys []*rsa.PublicKey) bool {
	for _, k := range keys {
		if t.verifyRS256(k) {
			return true
		}
	}
	return false
}

// check finds the access token of a send; nil and the failure's google.rpc
// status when it does not allow sending to project.
func (a *fcmAuth) check(authz, project string) (*accessToken, *googleError) {
	const scheme = "bearer "
	if authz == "" {
		return nil, errCredentialsMissing
	}
	if len(authz) <= len(scheme) || !strings.EqualFold(authz[:len(scheme)], scheme) {
		return nil, errTokenUnsupported
	}
	a.mu.RLock()
	t := a.tokens[authz[len(scheme):]]
	var expiry time.Time
	if t != nil {
		expiry = t.expiry
	}
	a.mu.RUnlock()
	switch {
	case t == nil:
		return nil, errTokenUnsupported
	case !a.now().Before(expiry):
		return nil, errTokenExpired
	case !contains(t.scopes, ScopeMessaging) && !contains(t.scopes, ScopeCloudPlatform):
		return nil, errScopeInsufficient
	case t.account.project != project:
		return nil, errPermissionDenied(project)
	}
	return t, nil
}

// ServiceAccountJSON is a service account key file as the Google Cloud
// console hands it out, its token_uri pointing at a mock.
type ServiceAccountJSON struct {
	Type                    string `json:"type"`
	ProjectID               string `json:"project_id"`
	PrivateKeyID            string `json:"private_key_id"`
	PrivateKey              string `json:"private_key"`
	ClientEmail             string `json:"client_email"`
	ClientID                string `json:"client_id"`
	AuthURI                 string `json:"auth_uri"`
	TokenURI                string `json:"token_uri"`
	AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url"`
	ClientX509CertURL       string `json:"client_x509_cert_url"`
	UniverseDomain          string `json:"universe_domain"`
}

// newServiceAccount generates a key for an account of project and returns
// the key file.
func newServiceAccount(project, tokenURI string) (ServiceAccountJSON, *rsa.PublicKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return ServiceAccountJSON{}, nil, fmt.Errorf("generate service account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return ServiceAccountJSON{}, nil, fmt.Errorf("encode service account key: %w", err)
	}
	email := "firebase-adminsdk-" + randomHex(3) + "@" + project + ".iam.gserviceaccount.com"
	return ServiceAccountJSON{
		Type:                    "service_account",
		ProjectID:               project,
		PrivateKeyID:            randomHex(20),
		PrivateKey:              string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail:             email,
		ClientID:                "1" + randomHex(10),
		AuthURI:                 "https://accounts.google.com/o/oauth2/auth",
		TokenURI:                tokenURI,
		AuthProviderX509CertURL: "https://www.googleapis.com/oauth2/v1/certs",
		ClientX509CertURL:       "https://www.googleapis.com/robot/v1/metadata/x509/" + email,
		UniverseDomain:          "googleapis.com",
	}, &key.PublicKey, nil
}

func (m *FCM) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	tok, terr := m.auth.grant(r.PostForm, m.TokenURL())
	if terr != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": terr.code, "error_description": terr.description})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int(m.auth.lifetime/time.Second) - 1,
		"token_type":   "Bearer",
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
