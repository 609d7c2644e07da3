package servicetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Secure is a Kafka broker and a ClickHouse server of a test's own that
// also serve TLS with a certificate signed by a CA made for the test, and
// know the user User with password Password (services.sh with
// ENGAGE_TLS_DIR and ENGAGE_SECURE_PASSWORD).
type Secure struct {
	// KafkaSASLSSL is the broker's SASL_SSL listener (SCRAM-SHA-512 and
	// PLAIN); KafkaPlain its plaintext one (no authentication).
	KafkaSASLSSL, KafkaPlain string
	// ClickHouseTLS is the native protocol over TLS, ClickHouseHTTPS the
	// HTTP interface over TLS; ClickHouse and ClickHouseHTTP are the plain
	// ports (user default, no password).
	ClickHouseTLS, ClickHouseHTTPS string
	ClickHouse, ClickHouseHTTP     string
	// CAFile is the PEM certificate of the CA that signed the servers'
	// certificate (valid for 127.0.0.1 and localhost).
	CAFile string
	// TLSDir holds ca.pem, server.pem and server-key.pem.
	TLSDir         string
	User, Password string

	Kafka, CH *Own
}

// StartSecure makes a CA and a server certificate in a temporary folder and
// starts a Kafka broker and a ClickHouse server of the test's own on free
// ports with their secure listeners; both are removed, data and all, when
// the test ends. Skipped (or failed under ENGAGE_REQUIRE_SERVICES=1) as
// Start is when the services script is not given.
func StartSecure(t testing.TB) *Secure {
	t.Helper()
	Script(t)
	dir := t.TempDir()
	if err := WriteTestCerts(dir, "127.0.0.1", "localhost"); err != nil {
		t.Fatalf("servicetest: certificates: %v", err)
	}
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		t.Fatal(err)
	}
	s := &Secure{CAFile: filepath.Join(dir, "ca.pem"), TLSDir: dir, User: "engage", Password: "pw-" + hex.EncodeToString(pw)}
	saslPort, chTLS, chHTTPS := FreePort(t), FreePort(t), FreePort(t)
	common := []string{"ENGAGE_TLS_DIR=" + dir, "ENGAGE_SECURE_PASSWORD=" + s.Password}
	s.Kafka = Start(t, "kafka", append(common, fmt.Sprintf("ENGAGE_KAFKA_SASL_SSL_PORT=%d", saslPort))...)
	s.CH = Start(t, "clickhouse", append(common, fmt.Sprintf("ENGAGE_CLICKHOUSE_SECURE_PORT=%d", chTLS),
		fmt.Sprintf("ENGAGE_CLICKHOUSE_HTTPS_PORT=%d", chHTTPS))...)
	s.KafkaSASLSSL, s.KafkaPlain = fmt.Sprintf("127.0.0.1:%d", saslPort), s.Kafka.Addr()
	s.ClickHouseTLS, s.ClickHouseHTTPS = fmt.Sprintf("127.0.0.1:%d", chTLS), fmt.Sprintf("127.0.0.1:%d", chHTTPS)
	s.ClickHouse, s.ClickHouseHTTP = s.CH.Addr(), s.CH.SecondAddr()
	return s
}

// WriteTestCerts writes into dir a self-signed CA (ca.pem, ca-key.pem) and a
// server certificate it signed for the given IP addresses and host names
// (server.pem, and server-key.pem in PKCS#8 as Kafka's PEM key store
// wants), valid for a day. For tests only.
func WriteTestCerts(dir string, hosts ...string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "engage test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	files := []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{"ca.pem", "CERTIFICATE", caDER, 0o644},
		{"ca-key.pem", "PRIVATE KEY", caKeyDER, 0o600},
		{"server.pem", "CERTIFICATE", der, 0o644},
		{"server-key.pem", "PRIVATE KEY", keyDER, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return err
		}
	}
	return nil
}
