package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// APNsConfig is one app's APNs credentials: a token key (.p8, the usual)
// or a certificate, and the app's bundle id.
type APNsConfig struct {
	TeamID, KeyID string
	Key           []byte           // the .p8 file's PEM
	Certificate   *tls.Certificate // instead of a key
	Topic         string           // the bundle id
	// Host replaces Apple's production and development hosts (a mock);
	// RootCAs are the roots trusted for it (nil: the system's).
	Host    string
	RootCAs *x509.CertPool
}

// APNs sends one app's deliveries to Apple over long-lived HTTP/2
// connections (one for production, one for the sandbox), many requests in
// flight on each. Safe for concurrent use.
type APNs struct {
	prod, dev *apns2.Client
	topic     string
	tok       *token.Token
	mu        sync.Mutex // a new provider token
}

// NewAPNs checks the credentials and prepares the clients (connections
// open at the first send).
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	if cfg.Topic == "" {
		return nil, errors.New("apns: the app's topic (bundle id) is required")
	}
	a := &APNs{topic: cfg.Topic}
	mk := func(development bool) (*apns2.Client, error) {
		var c *apns2.Client
		switch {
		case cfg.Certificate != nil:
			c = apns2.NewClient(*cfg.Certificate)
		case len(cfg.Key) > 0:
			if a.tok == nil {
				key, err := token.AuthKeyFromBytes(cfg.Key)
				if err != nil {
					return nil, fmt.Errorf("apns: the .p8 key: %w", err)
				}
				if cfg.TeamID == "" || cfg.KeyID == "" {
					return nil, errors.New("apns: a token key needs the team id and the key id")
				}
				a.tok = &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID}
			}
			c = apns2.NewTokenClient(a.tok)
		default:
			return nil, errors.New("apns: give a .p8 key (with team and key ids) or a certificate")
		}
		if development {
			c.Development()
		} else {
			c.Production()
		}
		if cfg.Host != "" {
			c.Host = cfg.Host
		}
		tr, ok := c.HTTPClient.Transport.(*http2.Transport)
		if !ok {
			return nil, errors.New("apns: unexpected transport of the apns2 client")
		}
		if cfg.RootCAs != nil {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{}
			}
			tr.TLSClientConfig.RootCAs = cfg.RootCAs
		}
		c.HTTPClient.Transport = &retryAfterTransport{next: tr}
		return c, nil
	}
	var err error
	if a.prod, err = mk(false); err != nil {
		return nil, err
	}
	if a.dev, err = mk(true); err != nil {
		return nil, err
	}
	return a, nil
}

// Close closes the idle connections.
func (a *APNs) Close() {
	a.prod.CloseIdleConnections()
	a.dev.CloseIdleConnections()
}

// Send sends one delivery and classifies Apple's answer.
func (a *APNs) Send(ctx context.Context, d *scheduler.DeliveryMessage) Result {
	n, err := APNsNotification(d, a.topic)
	if err != nil {
		return Result{Kind: Refused, Reason: err.Error()}
	}
	c := a.prod
	if tag.PushProvider(d.PushProvider) == tag.ProviderAPNsSandbox {
		c = a.dev
	}
	res := a.push(ctx, c, n)
	if res.Reason == apns2.ReasonExpiredProviderToken && a.tok != nil {
		// Our provider token is older than Apple accepts (clocks): make
		// a new one and try once more.
		a.mu.Lock()
		_, gerr := a.tok.Generate()
		a.mu.Unlock()
		if gerr != nil {
			return Result{Kind: AuthFailed, Reason: "ExpiredProviderToken, and a new one could not be made: " + gerr.Error()}
		}
		res = a.push(ctx, c, n)
	}
	return res
}

func (a *APNs) push(ctx context.Context, c *apns2.Client, n *apns2.Notification) Result {
	var ra string
	resp, err := c.PushWithContext(context.WithValue(ctx, retryAfterKey{}, &ra), n)
	if err != nil {
		if ctx.Err() != nil {
			return Result{Kind: Retry, Reason: "stopped: " + ctx.Err().Error()}
		}
		return Result{Kind: Retry, Reason: "network: " + err.Error()}
	}
	return classifyAPNs(resp.StatusCode, resp.Reason, resp.ApnsID, retryAfter(ra, time.Now()))
}

// classifyAPNs maps Apple's status and reason to a Result.
func classifyAPNs(status int, reason, id string, after time.Duration) Result {
	r := Result{Reason: reason, ProviderID: id, RetryAfter: after}
	if r.Reason == "" {
		r.Reason = fmt.Sprintf("status %d", status)
	}
	switch {
	case status == http.StatusOK:
		r.Kind, r.Reason = Sent, ""
	case reason == apns2.ReasonBadDeviceToken, reason == apns2.ReasonDeviceTokenNotForTopic,
		reason == apns2.ReasonUnregistered, reason == apns2.ReasonExpiredToken, status == http.StatusGone:
		r.Kind = TokenDead
	case status == http.StatusTooManyRequests, status >= 500:
		r.Kind = Retry
	case status == http.StatusForbidden:
		r.Kind = AuthFailed // InvalidProviderToken, BadCertificate, a revoked key, ExpiredProviderToken again
	default:
		r.Kind = Refused
	}
	return r
}

// APNsNotification is the request for a delivery, in Apple's documented
// shape: the alert (title, body), sound, badge and mutable-content (for an
// image) under "aps", or content-available alone for a data push (push
// type background, priority 5); the campaign's custom data at the top
// level, and "engage" with the delivery id, campaign, deep link and image
// for the app. The apns-id is the delivery id as a UUID.
func APNsNotification(d *scheduler.DeliveryMessage, topic string) (*apns2.Notification, error) {
	if d.PushToken == "" {
		return nil, errors.New("no push token")
	}
	m := d.Message
	aps := map[string]any{}
	n := &apns2.Notification{DeviceToken: d.PushToken, Topic: topic, CollapseID: m.CollapseID, ApnsID: uuidOf(d.ID)}
	if d.Channel == triggers.ChannelData {
		aps["content-available"] = 1
		n.PushType, n.Priority = apns2.PushTypeBackground, apns2.PriorityLow
	} else {
		alert := map[string]string{}
		if m.Title != "" {
			alert["title"] = m.Title
		}
		if m.Body != "" {
			alert["body"] = m.Body
		}
		aps["alert"] = alert
		if m.Sound != "" {
			aps["sound"] = m.Sound
		}
		if m.Badge != nil {
			aps["badge"] = *m.Badge
		}
		if m.Image != "" {
			aps["mutable-content"] = 1
		}
		n.PushType, n.Priority = apns2.PushTypeAlert, apns2.PriorityHigh
		if m.Priority == string(triggers.PriorityNormal) {
			n.Priority = apns2.PriorityLow
		}
	}
	payload := map[string]any{}
	for k, v := range m.Data {
		payload[k] = v
	}
	payload["aps"] = aps
	engage := map[string]string{"delivery_id": d.ID, "campaign": d.Campaign}
	if m.DeepLink != "" {
		engage["deep_link"] = m.DeepLink
	}
	if m.Image != "" {
		engage["image"] = m.Image
	}
	payload["engage"] = engage
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	if len(body) > 4096 {
		return nil, fmt.Errorf("payload of %d bytes: APNs takes 4096 at most", len(body))
	}
	n.Payload = body
	switch {
	case d.Expires != nil:
		n.Expiration = *d.Expires
	case m.TTLSeconds > 0:
		n.Expiration = d.Time.Add(time.Duration(m.TTLSeconds) * time.Second)
	}
	return n, nil
}

// uuidOf writes a 32-hex-digit id as a UUID (other ids: none).
func uuidOf(id string) string {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return ""
	}
	return id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:]
}

// retryAfterTransport copies each answer's Retry-After into the slot its
// request's context carries (apns2's Response has no headers).
type retryAfterTransport struct{ next *http2.Transport }

type retryAfterKey struct{}

func (t *retryAfterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		if slot, ok := r.Context().Value(retryAfterKey{}).(*string); ok {
			*slot = resp.Header.Get("Retry-After")
		}
	}
	return resp, err
}

func (t *retryAfterTransport) CloseIdleConnections() { t.next.CloseIdleConnections() }
