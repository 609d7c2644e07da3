package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/triggers/scheduler"
)

// CredentialsFile is the apps' provider credentials, as an operator writes
// them (YAML). Keys and service accounts come from files or environment
// variables, never from the file itself, and are never logged.
//
//	apps:
//	  game:
//	    apns:
//	      team_id: ABCDE12345
//	      key_id: KEY1234567
//	      key_file: /etc/engage/AuthKey_KEY1234567.p8   # or key_env: ENGAGE_APNS_KEY_GAME; or cert_file / cert_env (PEM)
//	      topic: com.example.game                       # the bundle id
//	      rate: 2000                                    # sends a second at most (optional)
//	      max_in_flight: 500                            # waiting for Apple at once (optional)
//	    fcm:
//	      project_id: game-prod
//	      service_account_file: /etc/engage/game-sa.json # or service_account_env
type CredentialsFile struct {
	Apps map[string]AppCredentials `yaml:"apps"`
}

// AppCredentials are one app's.
type AppCredentials struct {
	APNs *APNsCredentials `yaml:"apns"`
	FCM  *FCMCredentials  `yaml:"fcm"`
}

// APNsCredentials are an app's APNs token key (.p8, with the team and key
// ids) or its certificate (PEM: the certificate and its private key).
type APNsCredentials struct {
	TeamID   string `yaml:"team_id"`
	KeyID    string `yaml:"key_id"`
	KeyFile  string `yaml:"key_file"`
	KeyEnv   string `yaml:"key_env"`
	CertFile string `yaml:"cert_file"`
	CertEnv  string `yaml:"cert_env"`
	Topic    string `yaml:"topic"`
	// Host and CAFile send to another endpoint than Apple's (a proxy, a
	// test server) and trust its certificate.
	Host   string `yaml:"host"`
	CAFile string `yaml:"ca_file"`
	Limits `yaml:",inline"`
}

// FCMCredentials are an app's Firebase service account.
type FCMCredentials struct {
	ProjectID          string `yaml:"project_id"`
	ServiceAccountFile string `yaml:"service_account_file"`
	ServiceAccountEnv  string `yaml:"service_account_env"`
	Endpoint           string `yaml:"endpoint"` // another endpoint than Google's
	Limits             `yaml:",inline"`
}

// Providers are the senders of every app.
type Providers struct {
	apns    map[string]*APNs
	fcm     map[string]*FCM
	senders map[string]PushSender // app/apns, app/fcm: with the app's limits
}

// LoadCredentials reads the file and prepares each app's senders; every
// mistake is reported with the app it is about (and no secret).
func LoadCredentials(ctx context.Context, path string) (*Providers, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f CredentialsFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p := &Providers{apns: map[string]*APNs{}, fcm: map[string]*FCM{}, senders: map[string]PushSender{}}
	var errs []error
	apps := make([]string, 0, len(f.Apps))
	for a := range f.Apps {
		apps = append(apps, a)
	}
	sort.Strings(apps)
	for _, app := range apps {
		c := f.Apps[app]
		if c.APNs == nil && c.FCM == nil {
			errs = append(errs, fmt.Errorf("%s: app %q: give apns, fcm or both", path, app))
		}
		if a := c.APNs; a != nil {
			cfg := APNsConfig{TeamID: a.TeamID, KeyID: a.KeyID, Topic: a.Topic, Host: a.Host}
			if a.CertFile != "" || a.CertEnv != "" {
				pem, err := secret(a.CertFile, a.CertEnv)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: app %q: apns certificate: %w", path, app, err))
					continue
				}
				cert, err := tls.X509KeyPair(pem, pem)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: app %q: apns certificate: the PEM must hold the certificate and its private key: %w", path, app, err))
					continue
				}
				cfg.Certificate = &cert
			} else {
				key, err := secret(a.KeyFile, a.KeyEnv)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: app %q: apns key: %w", path, app, err))
					continue
				}
				cfg.Key = key
			}
			if a.CAFile != "" {
				pem, err := os.ReadFile(a.CAFile)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: app %q: apns ca_file: %w", path, app, err))
					continue
				}
				cfg.RootCAs = x509.NewCertPool()
				if !cfg.RootCAs.AppendCertsFromPEM(pem) {
					errs = append(errs, fmt.Errorf("%s: app %q: apns ca_file %s holds no PEM certificate", path, app, a.CAFile))
					continue
				}
			}
			s, err := NewAPNs(cfg)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: app %q: %w", path, app, err))
				continue
			}
			if err := a.Limits.check(); err != nil {
				errs = append(errs, fmt.Errorf("%s: app %q: apns: %w", path, app, err))
				continue
			}
			p.apns[app] = s
			p.senders[app+"/apns"] = Limited(s, a.Limits)
		}
		if fc := c.FCM; fc != nil {
			sa, err := secret(fc.ServiceAccountFile, fc.ServiceAccountEnv)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: app %q: fcm service account: %w", path, app, err))
				continue
			}
			s, err := NewFCM(ctx, FCMConfig{ServiceAccount: sa, ProjectID: fc.ProjectID, Endpoint: fc.Endpoint})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: app %q: %w", path, app, err))
				continue
			}
			if err := fc.Limits.check(); err != nil {
				errs = append(errs, fmt.Errorf("%s: app %q: fcm: %w", path, app, err))
				continue
			}
			p.fcm[app] = s
			p.senders[app+"/fcm"] = Limited(s, fc.Limits)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// secret reads a key from its file or environment variable.
func secret(file, env string) ([]byte, error) {
	switch {
	case file != "" && env != "":
		return nil, errors.New("give a file or an environment variable, not both")
	case file != "":
		return os.ReadFile(file)
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return nil, fmt.Errorf("environment variable %s is not set", env)
		}
		return []byte(v), nil
	}
	return nil, errors.New("give a file or an environment variable")
}

// PushSender is what APNs and FCM are.
type PushSender interface {
	Send(ctx context.Context, d *scheduler.DeliveryMessage) Result
}

// Sender returns an app's sender for a provider (false: the app has no
// credentials for it).
func (p *Providers) Sender(app string, provider tag.PushProvider) (PushSender, bool) {
	var s PushSender
	switch provider {
	case tag.ProviderAPNs, tag.ProviderAPNsSandbox:
		s = p.senders[app+"/apns"]
	case tag.ProviderFCM:
		s = p.senders[app+"/fcm"]
	}
	return s, s != nil
}

// Apps lists the apps with credentials, and their providers.
func (p *Providers) Apps() map[string][]string {
	out := map[string][]string{}
	for a := range p.apns {
		out[a] = append(out[a], "apns")
	}
	for a := range p.fcm {
		out[a] = append(out[a], "fcm")
	}
	return out
}

// Close releases the connections.
func (p *Providers) Close() {
	for _, a := range p.apns {
		a.Close()
	}
}
