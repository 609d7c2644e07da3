package delivery_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openengage/engage/delivery"
	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/pipeline/tag"
)

// The credentials file: keys from files or the environment; each mistake
// names its app, and no key appears in an error.
func TestLoadCredentials(t *testing.T) {
	m, err := mock.StartAPNs(mock.APNsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p8, err := m.NewKey("TEAM123456", "KEY1234567", "com.example.game")
	if err != nil {
		t.Fatal(err)
	}
	f, err := mock.StartFCM(mock.FCMConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sa, err := f.NewServiceAccount("game-project")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := write("key.p8", string(p8))
	write("ca.pem", string(m.CertificatePEM()))
	t.Setenv("TEST_FCM_SA", string(sa))
	good := write("good.yaml", `apps:
  game:
    apns: {team_id: TEAM123456, key_id: KEY1234567, key_file: `+keyFile+`, topic: com.example.game, host: `+m.URL()+`, ca_file: `+filepath.Join(dir, "ca.pem")+`}
    fcm: {project_id: game-project, service_account_env: TEST_FCM_SA, endpoint: `+f.Endpoint()+`}
  news:
    fcm: {project_id: game-project, service_account_env: TEST_FCM_SA, endpoint: `+f.Endpoint()+`}
`)
	p, err := delivery.LoadCredentials(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, c := range []struct {
		app  string
		prov tag.PushProvider
		ok   bool
	}{{"game", tag.ProviderAPNs, true}, {"game", tag.ProviderAPNsSandbox, true}, {"game", tag.ProviderFCM, true}, {"news", tag.ProviderFCM, true},
		{"news", tag.ProviderAPNs, false}, {"other", tag.ProviderFCM, false}} {
		if _, ok := p.Sender(c.app, c.prov); ok != c.ok {
			t.Errorf("%s %s: %v", c.app, c.prov, ok)
		}
	}
	s, _ := p.Sender("game", tag.ProviderAPNs)
	if r := s.Send(context.Background(), pushDelivery(1, "apns")); r.Kind != delivery.Sent {
		t.Errorf("a send with the loaded APNs credentials: %+v", r)
	}
	s, _ = p.Sender("game", tag.ProviderFCM)
	if r := s.Send(context.Background(), pushDelivery(2, "fcm")); r.Kind != delivery.Sent {
		t.Errorf("a send with the loaded FCM credentials: %+v", r)
	}

	// Certificate auth: the PEM with the certificate and its key.
	cert, err := m.IssueCertificate("com.example.game")
	if err != nil {
		t.Fatal(err)
	}
	pemData, err := mock.EncodeCertificatePEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	certFile := write("cert.pem", string(pemData))
	pc, err := delivery.LoadCredentials(context.Background(), write("cert.yaml", `apps:
  game:
    apns: {cert_file: `+certFile+`, topic: com.example.game, host: `+m.URL()+`, ca_file: `+filepath.Join(dir, "ca.pem")+`}
`))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, _ = pc.Sender("game", tag.ProviderAPNs)
	if r := s.Send(context.Background(), pushDelivery(3, "apns")); r.Kind != delivery.Sent {
		t.Errorf("a send with the certificate: %+v", r)
	}

	for name, c := range map[string]struct{ yaml, want string }{
		"missing key file": {"apps:\n  game:\n    apns: {team_id: T, key_id: K, key_file: /nonexistent.p8, topic: t}\n", `app "game": apns key: open /nonexistent.p8`},
		"unset variable":   {"apps:\n  news:\n    fcm: {project_id: p, service_account_env: TEST_UNSET_VAR_X}\n", `app "news": fcm service account: environment variable TEST_UNSET_VAR_X is not set`},
		"file and env":     {"apps:\n  game:\n    apns: {team_id: T, key_id: K, key_file: " + keyFile + ", key_env: X, topic: t}\n", `app "game": apns key: give a file or an environment variable, not both`},
		"no topic":         {"apps:\n  game:\n    apns: {team_id: T, key_id: K, key_file: " + keyFile + "}\n", `app "game": apns: the app's topic (bundle id) is required`},
		"no provider":      {"apps:\n  game: {}\n", `app "game": give apns, fcm or both`},
		"unknown field":    {"apps:\n  game:\n    apns: {team: T}\n", `field team not found`},
		"bad certificate":  {"apps:\n  game:\n    apns: {cert_file: " + keyFile + ", topic: t}\n", `app "game": apns certificate: the PEM must hold the certificate and its private key`},
	} {
		_, err := delivery.LoadCredentials(context.Background(), write(strings.ReplaceAll(name, " ", "_")+".yaml", c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("%s: the error shows a key", name)
		}
	}
}
