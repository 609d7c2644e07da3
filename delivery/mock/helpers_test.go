package mock_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The Admin SDK's transport keeps HTTP/1.1 connections alive; they
		// end when the mock closes them, after the test.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// devToken is a well-formed APNs device token (64 hexadecimal digits).
func devToken(i int) string { return fmt.Sprintf("%064x", i+1) }

// jwtSign builds a compact JWS from header and claims, signed by sign.
func jwtSign(t *testing.T, header, claims map[string]any, sign func(digest []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	d := sha256.Sum256([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(sign(d[:]))
}

// es256 signs as ES256 does: r and s, 32 bytes each.
func es256(t *testing.T, key *ecdsa.PrivateKey) func([]byte) []byte {
	return func(d []byte) []byte {
		r, s, err := ecdsa.Sign(rand.Reader, key, d)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

func rs256(t *testing.T, key *rsa.PrivateKey) func([]byte) []byte {
	return func(d []byte) []byte {
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

// parseP8 reads the private key of a .p8 file.
func parseP8(t *testing.T, p8 []byte) *ecdsa.PrivateKey {
	t.Helper()
	b, _ := pem.Decode(p8)
	if b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("p8: not a PRIVATE KEY PEM block: %q", p8)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}
