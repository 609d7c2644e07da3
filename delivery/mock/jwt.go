package mock

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
)

// jwt is a decoded JSON Web Token (RFC 7519) in compact JWS form, its
// signature not yet checked.
type jwt struct {
	header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	claims       map[string]any
	signingInput string // base64url(header) "." base64url(claims)
	signature    []byte
}

var errMalformedJWT = errors.New("malformed JWT")

func parseJWT(s string) (*jwt, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, errMalformedJWT
	}
	var t jwt
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, errMalformedJWT
	}
	if err := json.Unmarshal(h, &t.header); err != nil {
		return nil, errMalformedJWT
	}
	c, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errMalformedJWT
	}
	d := json.NewDecoder(bytes.NewReader(c))
	d.UseNumber()
	if err := d.Decode(&t.claims); err != nil || t.claims == nil {
		return nil, errMalformedJWT
	}
	if t.signature, err = base64.RawURLEncoding.DecodeString(parts[2]); err != nil {
		return nil, errMalformedJWT
	}
	t.signingInput = s[:len(parts[0])+1+len(parts[1])]
	return &t, nil
}

// str is a string claim, "" when absent or not a string.
func (t *jwt) str(name string) string {
	s, _ := t.claims[name].(string)
	return s
}

// num is an integer claim (NumericDate), false when absent or not a number.
func (t *jwt) num(name string) (int64, bool) {
	n, ok := t.claims[name].(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil {
		return 0, false
	}
	return int64(f), true
}

// verifyES256 checks an ES256 signature: r and s as 32-byte big-endian
// integers, concatenated (RFC 7518 section 3.4).
func (t *jwt) verifyES256(pub *ecdsa.PublicKey) bool {
	if len(t.signature) != 64 {
		return false
	}
	h := sha256.Sum256([]byte(t.signingInput))
	r := new(big.Int).SetBytes(t.signature[:32])
	s := new(big.Int).SetBytes(t.signature[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}

// verifyRS256 checks an RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature.
func (t *jwt) verifyRS256(pub *rsa.PublicKey) bool {
	h := sha256.Sum256([]byte(t.signingInput))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], t.signature) == nil
}
