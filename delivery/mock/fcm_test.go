package mock_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"

	"github.com/openengage/engage/delivery/mock"
)

const project = "engage-test"

func startFCM(t *testing.T, cfg mock.FCMConfig) *mock.FCM {
	t.Helper()
	m, err := mock.StartFCM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func serviceAccount(t *testing.T, m *mock.FCM, proj string) ([]byte, mock.ServiceAccountJSON) {
	t.Helper()
	sa, err := m.NewServiceAccount(proj)
	if err != nil {
		t.Fatal(err)
	}
	var f mock.ServiceAccountJSON
	if err := json.Unmarshal(sa, &f); err != nil {
		t.Fatal(err)
	}
	return sa, f
}

// fcmClient is the Admin SDK's messaging client pointed at the mock: the
// service account's key file (token_uri at the mock) and the endpoint.
func fcmClient(t *testing.T, m *mock.FCM, sa []byte, proj string) *messaging.Client {
	t.Helper()
	ctx := context.Background()
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: proj},
		option.WithCredentialsJSON(sa), option.WithEndpoint(m.Endpoint()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var nameRE = regexp.MustCompile(`^projects/` + project + `/messages/0:[0-9]+%[0-9a-f]+$`)

func TestFCMSendAccepts(t *testing.T) {
	m := startFCM(t, mock.FCMConfig{})
	sa, f := serviceAccount(t, m, project)
	c := fcmClient(t, m, sa, project)
	ctx := context.Background()

	ttl := 3500 * time.Millisecond
	badge := 2
	msg := &messaging.Message{
		Token:        "fcm-token-1",
		Data:         map[string]string{"delivery_id": "d-1", "campaign": "welcome"},
		Notification: &messaging.Notification{Title: "Hello", Body: "World"},
		Android: &messaging.AndroidConfig{
			CollapseKey: "news", Priority: "high", TTL: &ttl,
			Notification: &messaging.AndroidNotification{ChannelID: "promo", Priority: messaging.PriorityHigh,
				Visibility: messaging.VisibilityPublic, VibrateTimingMillis: []int64{100, 200}},
		},
		APNS: &messaging.APNSConfig{
			Headers: map[string]string{"apns-priority": "10", "apns-push-type": "alert"},
			Payload: &messaging.APNSPayload{Aps: &messaging.Aps{Badge: &badge, Sound: "default", MutableContent: true}},
		},
		Webpush: &messaging.WebpushConfig{Headers: map[string]string{"TTL": "60"},
			Notification: &messaging.WebpushNotification{Title: "Hi", Actions: []*messaging.WebpushNotificationAction{{Action: "open", Title: "Open"}}}},
		FCMOptions: &messaging.FCMOptions{AnalyticsLabel: "welcome"},
	}
	name, err := c.Send(ctx, msg)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if !nameRE.MatchString(name) {
		t.Errorf("name = %q", name)
	}
	name2, err := c.Send(ctx, &messaging.Message{Topic: "news", Data: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatalf("send to topic: %v", err)
	}
	if name2 == name {
		t.Error("two sends got one name")
	}
	if _, err := c.Send(ctx, &messaging.Message{Condition: "'a' in topics && 'b' in topics"}); err != nil {
		t.Fatalf("send to condition: %v", err)
	}
	dry, err := c.SendDryRun(ctx, &messaging.Message{Token: "fcm-token-2"})
	if err != nil || dry != "projects/"+project+"/messages/fake_message_id" {
		t.Fatalf("dry run: %q %v", dry, err)
	}
	if n := m.AccessTokensIssued(); n != 1 {
		t.Errorf("access tokens issued = %d, want 1 (reused)", n)
	}

	recs := m.Records()
	if len(recs) != 4 {
		t.Fatalf("records = %d, want 4", len(recs))
	}
	r := recs[0]
	if r.Project != project || r.Account != f.ClientEmail || r.Token != "fcm-token-1" || r.Status != 200 ||
		r.Name != name || r.ValidateOnly || r.Header.Get("Authorization") != "" ||
		r.Header.Get("X-Goog-Api-Format-Version") != "2" || !strings.HasPrefix(r.Header.Get("X-Firebase-Client"), "fire-admin-go/") {
		t.Errorf("record = %+v", r)
	}
	// The shape the client sends, as FCM reads it.
	var got struct {
		Data    map[string]string `json:"data"`
		Android struct {
			TTL          string `json:"ttl"`
			Priority     string `json:"priority"`
			CollapseKey  string `json:"collapse_key"`
			Notification struct {
				ChannelID      string   `json:"channel_id"`
				Priority       string   `json:"notification_priority"`
				VibrateTimings []string `json:"vibrate_timings"`
			} `json:"notification"`
		} `json:"android"`
		APNS struct {
			Headers map[string]string `json:"headers"`
			Payload struct {
				Aps map[string]any `json:"aps"`
			} `json:"payload"`
		} `json:"apns"`
	}
	if err := json.Unmarshal(r.Message, &got); err != nil {
		t.Fatal(err)
	}
	if got.Data["delivery_id"] != "d-1" || got.Android.TTL != "3.500000000s" || got.Android.Priority != "high" ||
		got.Android.CollapseKey != "news" || got.Android.Notification.ChannelID != "promo" ||
		got.Android.Notification.Priority != "PRIORITY_HIGH" || len(got.Android.Notification.VibrateTimings) != 2 ||
		got.APNS.Headers["apns-priority"] != "10" || got.APNS.Payload.Aps["badge"] != 2.0 || got.APNS.Payload.Aps["mutable-content"] != 1.0 {
		t.Errorf("recorded message = %s", r.Message)
	}
	if recs[1].Topic != "news" || recs[2].Condition == "" || !recs[3].ValidateOnly {
		t.Errorf("records = %+v %+v %+v", recs[1], recs[2], recs[3])
	}
}

func TestFCMErrorRules(t *testing.T) {
	m := startFCM(t, mock.FCMConfig{})
	sa, _ := serviceAccount(t, m, project)
	c := fcmClient(t, m, sa, project)
	preds := map[string]func(error) bool{
		mock.FCMUnregistered:        messaging.IsUnregistered,
		mock.FCMInvalidArgument:     messaging.IsInvalidArgument,
		mock.FCMSenderIDMismatch:    messaging.IsSenderIDMismatch,
		mock.FCMQuotaExceeded:       messaging.IsQuotaExceeded,
		mock.FCMUnavailable:         messaging.IsUnavailable,
		mock.FCMInternal:            messaging.IsInternal,
		mock.FCMThirdPartyAuthError: messaging.IsThirdPartyAuthError,
	}
	status := map[string]int{
		mock.FCMUnregistered: 404, mock.FCMInvalidArgument: 400, mock.FCMSenderIDMismatch: 403,
		mock.FCMQuotaExceeded: 429, mock.FCMUnavailable: 503, mock.FCMInternal: 500, mock.FCMThirdPartyAuthError: 401,
	}
	i := 0
	for code := range preds {
		i++
		t.Run(code, func(t *testing.T) {
			tok := fmt.Sprintf("token-%d", i)
			a := mock.FCMReject(code)
			// The client retries a 503 four times with backoff, unless
			// Retry-After asks for more than its two-minute cap.
			a.RetryAfter = 5 * time.Minute
			m.AddRule(mock.FCMRule{Token: tok, Answer: a, Times: 1})
			_, err := c.Send(context.Background(), &messaging.Message{Token: tok})
			if err == nil {
				t.Fatal("send succeeded")
			}
			for other, p := range preds {
				if p(err) != (other == code) {
					t.Errorf("Is%s(err) = %v for %s: %v", other, p(err), code, err)
				}
			}
			if resp := errorutils.HTTPResponse(err); resp == nil || resp.StatusCode != status[code] {
				t.Errorf("HTTP response %+v, want status %d", resp, status[code])
			}
			if _, err := c.Send(context.Background(), &messaging.Message{Token: tok}); err != nil {
				t.Errorf("second send after a rule for one: %v", err)
			}
		})
	}

	t.Run("project quota", func(t *testing.T) {
		m.AddRule(mock.FCMRule{Answer: mock.FCMProjectQuotaExceeded, Times: 1})
		_, err := c.Send(context.Background(), &messaging.Message{Token: "any"})
		if err == nil {
			t.Fatal("send succeeded")
		}
		if messaging.IsQuotaExceeded(err) || !errorutils.IsResourceExhausted(err) {
			t.Errorf("IsQuotaExceeded = %v, IsResourceExhausted = %v, want false, true: %v",
				messaging.IsQuotaExceeded(err), errorutils.IsResourceExhausted(err), err)
		}
		if resp := errorutils.HTTPResponse(err); resp == nil || resp.StatusCode != 429 {
			t.Errorf("HTTP response %+v, want 429", resp)
		}
	})

	t.Run("retried by the client", func(t *testing.T) {
		m.ResetRecords()
		m.AddRule(mock.FCMRule{Token: "flaky", Answer: mock.FCMReject(mock.FCMUnavailable), Times: 1})
		if _, err := c.Send(context.Background(), &messaging.Message{Token: "flaky"}); err != nil {
			t.Fatalf("send: %v", err)
		}
		recs := m.Records()
		if len(recs) != 2 || recs[0].Status != 503 || recs[0].Code != mock.FCMUnavailable || !recs[0].ByRule || recs[1].Status != 200 {
			t.Errorf("records = %+v, want a 503 and its retry", recs)
		}
	})

	if s := m.Stats(); s.ByReason[mock.FCMUnregistered] != 1 || s.ByReason["RESOURCE_EXHAUSTED"] != 1 || s.ByRule != 9 {
		t.Errorf("stats = %+v", s)
	}
}

func TestFCMSendEach(t *testing.T) {
	m := startFCM(t, mock.FCMConfig{})
	sa, _ := serviceAccount(t, m, project)
	c := fcmClient(t, m, sa, project)
	m.AddRule(mock.FCMRule{Token: "t2", Answer: mock.FCMReject(mock.FCMUnregistered)})
	var msgs []*messaging.Message
	for i := range 5 {
		msgs = append(msgs, &messaging.Message{Token: fmt.Sprintf("t%d", i), Data: map[string]string{"i": fmt.Sprint(i)}})
	}
	br, err := c.SendEach(context.Background(), msgs)
	if err != nil {
		t.Fatal(err)
	}
	if br.SuccessCount != 4 || br.FailureCount != 1 || !messaging.IsUnregistered(br.Responses[2].Error) {
		t.Errorf("batch = %+v, response 2 = %+v", br, br.Responses[2])
	}
	if s := m.Stats(); s.Requests != 5 {
		t.Errorf("requests = %d, want one per message", s.Requests)
	}
}

// accessToken gets an access token from the mock as the oauth2 library does
// for a service account key file.
func accessToken(t *testing.T, sa []byte, scopes ...string) string {
	t.Helper()
	cfg, err := google.JWTConfigFromJSON(sa, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.TokenSource(context.Background()).Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

type googleAnswer struct {
	status int
	Error  struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type            string            `json:"@type"`
			ErrorCode       string            `json:"errorCode"`
			Reason          string            `json:"reason"`
			Metadata        map[string]string `json:"metadata"`
			FieldViolations []struct {
				Field       string `json:"field"`
				Description string `json:"description"`
			} `json:"fieldViolations"`
		} `json:"details"`
	} `json:"error"`
	Name string `json:"name"`
}

func (g googleAnswer) detail(typ string) (fcmCode, reason, field string, ok bool) {
	for _, d := range g.Error.Details {
		if d.Type == "type.googleapis.com/"+typ {
			f := ""
			if len(d.FieldViolations) > 0 {
				f = d.FieldViolations[0].Field
			}
			return d.ErrorCode, d.Reason, f, true
		}
	}
	return "", "", "", false
}

func rawSend(t *testing.T, m *mock.FCM, bearer, proj, body string) googleAnswer {
	t.Helper()
	req, err := http.NewRequest("POST", m.Endpoint()+"/projects/"+proj+"/messages:send", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	g := googleAnswer{status: resp.StatusCode}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, b)
	}
	if g.status != 200 && (g.Error.Code != g.status || g.Error.Status == "" || g.Error.Message == "") {
		t.Errorf("error body %s does not match status %d", b, g.status)
	}
	return g
}

func TestFCMMalformedMessages(t *testing.T) {
	m := startFCM(t, mock.FCMConfig{})
	sa, _ := serviceAccount(t, m, project)
	bearer := accessToken(t, sa, mock.ScopeMessaging)
	big := strings.Repeat("x", 4100)
	cases := []struct {
		name, body string
		status     int
		fcmCode    string // the FcmError detail's errorCode; "" for none
		field      string // the BadRequest detail's field
		message    string // a part of the message
	}{
		{"camelCase and enums in capitals", `{"message":{"token":"t","android":{"collapseKey":"c","ttl":"3.5s","priority":"HIGH",
			"notification":{"notificationPriority":"PRIORITY_MAX","eventTime":"2026-01-02T03:04:05.123Z","notificationCount":"3"}}},"validateOnly":true}`, 200, "", "", ""},
		{"two targets", `{"message":{"token":"t","topic":"news"}}`, 400, "", "", "Oneof field 'target' is already set"},
		{"no target", `{"message":{"data":{"k":"v"}}}`, 400, "INVALID_ARGUMENT", "message", "Recipient of the message is not set."},
		{"no message", `{}`, 400, "INVALID_ARGUMENT", "message", "Recipient"},
		{"data value a number", `{"message":{"token":"t","data":{"a":"1","b":12}}}`, 400, "", "message.data[1].value", "Invalid value at 'message.data[1].value' (TYPE_STRING), 12"},
		{"android data value a bool", `{"message":{"token":"t","android":{"data":{"a":true}}}}`, 400, "", "message.android.data[0].value", "TYPE_STRING"},
		{"ttl without unit", `{"message":{"token":"t","android":{"ttl":"10"}}}`, 400, "", "message.android.ttl", "google.protobuf.Duration"},
		{"ttl a number", `{"message":{"token":"t","android":{"ttl":10}}}`, 400, "", "message.android.ttl", "Duration"},
		{"android priority urgent", `{"message":{"token":"t","android":{"priority":"urgent"}}}`, 400, "", "message.android.priority", "AndroidMessagePriority"},
		{"unknown field", `{"message":{"token":"t","android":{"delay":"1s"}}}`, 400, "", "", `Unknown name "delay" at 'message.android'`},
		{"unknown top-level field", `{"message":{"token":"t"},"dry_run":true}`, 400, "", "", `Unknown name "dry_run"`},
		{"apns header a number", `{"message":{"token":"t","apns":{"headers":{"apns-priority":10}}}}`, 400, "", "message.apns.headers[0].value", "TYPE_STRING"},
		{"apns payload a string", `{"message":{"token":"t","apns":{"payload":"aps"}}}`, 400, "", "message.apns.payload", "Struct"},
		{"webpush not an object", `{"message":{"token":"t","webpush":[]}}`, 400, "", "message.webpush", "WebpushConfig"},
		{"topic with prefix", `{"message":{"topic":"/topics/news"}}`, 400, "INVALID_ARGUMENT", "message.topic", "Invalid topic name"},
		{"reserved data key", `{"message":{"token":"t","data":{"from":"x"}}}`, 400, "INVALID_ARGUMENT", "message.data", "from"},
		{"data too big", `{"message":{"token":"t","data":{"k":"` + big + `"}}}`, 400, "", "", "Request contains an invalid argument."},
		{"invalid token", `{"message":{"token":"not a token!"}}`, 400, "INVALID_ARGUMENT", "message.token", "not a valid FCM registration token"},
		{"not JSON", `hello`, 400, "", "", "Invalid JSON payload"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := rawSend(t, m, bearer, project, tc.body)
			if g.status != tc.status {
				t.Fatalf("status %d (%s), want %d", g.status, g.Error.Message, tc.status)
			}
			if tc.status == 200 {
				return
			}
			if g.Error.Status != "INVALID_ARGUMENT" || !strings.Contains(g.Error.Message, tc.message) {
				t.Errorf("error %s %q, want INVALID_ARGUMENT with %q", g.Error.Status, g.Error.Message, tc.message)
			}
			code, _, _, _ := g.detail("google.firebase.fcm.v1.FcmError")
			if code != tc.fcmCode {
				t.Errorf("FcmError %q, want %q", code, tc.fcmCode)
			}
			_, _, field, hasBR := g.detail("google.rpc.BadRequest")
			if field != tc.field || hasBR == (tc.message == "Request contains an invalid argument.") {
				t.Errorf("BadRequest detail %v field %q, want field %q", hasBR, field, tc.field)
			}
			recs := m.Records()
			if r := recs[len(recs)-1]; r.Status != 400 || r.Code != cmp(tc.fcmCode, "INVALID_ARGUMENT") {
				t.Errorf("recorded %d %q", r.Status, r.Code)
			}
		})
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestFCMAuth(t *testing.T) {
	m := startFCM(t, mock.FCMConfig{})
	sa, f := serviceAccount(t, m, project)
	ctx := context.Background()

	t.Run("no credential", func(t *testing.T) {
		g := rawSend(t, m, "", project, `{"message":{"token":"t"}}`)
		if _, reason, _, _ := g.detail("google.rpc.ErrorInfo"); g.status != 401 || g.Error.Status != "UNAUTHENTICATED" || reason != "CREDENTIALS_MISSING" {
			t.Errorf("got %d %s %q", g.status, g.Error.Status, reason)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		g := rawSend(t, m, "ya29.made-up", project, `{"message":{"token":"t"}}`)
		if _, reason, _, _ := g.detail("google.rpc.ErrorInfo"); g.status != 401 || reason != "ACCESS_TOKEN_TYPE_UNSUPPORTED" {
			t.Errorf("got %d %q", g.status, reason)
		}
	})
	t.Run("scope without messaging", func(t *testing.T) {
		g := rawSend(t, m, accessToken(t, sa, "https://www.googleapis.com/auth/userinfo.email"), project, `{"message":{"token":"t"}}`)
		if _, reason, _, _ := g.detail("google.rpc.ErrorInfo"); g.status != 403 || reason != "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
			t.Errorf("got %d %q", g.status, reason)
		}
	})
	t.Run("another project", func(t *testing.T) {
		c := fcmClient(t, m, sa, "someone-else")
		_, err := c.Send(ctx, &messaging.Message{Token: "t"})
		if !errorutils.IsPermissionDenied(err) || messaging.IsSenderIDMismatch(err) {
			t.Errorf("err = %v, want PERMISSION_DENIED without an FcmError", err)
		}
	})
	t.Run("expired access token", func(t *testing.T) {
		c := fcmClient(t, m, sa, project)
		if _, err := c.Send(ctx, &messaging.Message{Token: "t"}); err != nil {
			t.Fatal(err)
		}
		m.ExpireAccessTokens()
		_, err := c.Send(ctx, &messaging.Message{Token: "t"})
		if !errorutils.IsUnauthenticated(err) {
			t.Errorf("err = %v, want UNAUTHENTICATED", err)
		}
	})
	t.Run("revoked key", func(t *testing.T) {
		if !m.RevokeServiceAccountKey(f.ClientEmail, f.PrivateKeyID) {
			t.Fatal("RevokeServiceAccountKey: not found")
		}
		// The token fetch the SDK makes (through golang.org/x/oauth2), which
		// the SDK would retry four times over seven seconds.
		cfg, err := google.JWTConfigFromJSON(sa, mock.ScopeMessaging)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cfg.TokenSource(ctx).Token()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response.StatusCode != 400 || !strings.Contains(string(re.Body), `"error":"invalid_grant"`) {
			t.Errorf("err = %v, want the token endpoint's invalid_grant", err)
		}
	})
}

func TestFCMTokenEndpoint(t *testing.T) {
	m := startFCM(t, mock.FCMConfig{})
	_, f := serviceAccount(t, m, project)
	b, _ := pem.Decode([]byte(f.PrivateKey))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*rsa.PrivateKey)
	_, other := serviceAccount(t, m, project)
	ob, _ := pem.Decode([]byte(other.PrivateKey))
	ok, err := x509.ParsePKCS8PrivateKey(ob.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": f.ClientEmail, "aud": m.TokenURL(), "scope": mock.ScopeMessaging, "iat": now, "exp": now + 3600}
		if mod != nil {
			mod(c)
		}
		return c
	}
	hdr := map[string]any{"alg": "RS256", "typ": "JWT", "kid": f.PrivateKeyID}
	cases := []struct {
		name, grant, assertion, err, desc string
	}{
		{"valid", "", jwtSign(t, hdr, claims(nil), rs256(t, key)), "", ""},
		{"wrong grant type", "client_credentials", jwtSign(t, hdr, claims(nil), rs256(t, key)), "unsupported_grant_type", ""},
		{"signed by another account's key", "", jwtSign(t, hdr, claims(nil), rs256(t, ok.(*rsa.PrivateKey))), "invalid_grant", "Invalid JWT Signature."},
		{"not a JWT", "", "a.b.c", "invalid_grant", "Invalid JWT Signature."},
		{"unknown account", "", jwtSign(t, hdr, claims(func(c map[string]any) { c["iss"] = "nobody@x.iam.gserviceaccount.com" }), rs256(t, key)), "invalid_grant", "account not found"},
		{"wrong audience", "", jwtSign(t, hdr, claims(func(c map[string]any) { c["aud"] = "https://oauth2.googleapis.com/token" }), rs256(t, key)), "invalid_grant", "Failed audience check"},
		{"two hours long", "", jwtSign(t, hdr, claims(func(c map[string]any) { c["exp"] = now + 7200 }), rs256(t, key)), "invalid_grant", "short-lived"},
		{"expired", "", jwtSign(t, hdr, claims(func(c map[string]any) { c["iat"], c["exp"] = now-7200, now-3600 }), rs256(t, key)), "invalid_grant", "short-lived"},
		{"no scope", "", jwtSign(t, hdr, claims(func(c map[string]any) { delete(c, "scope") }), rs256(t, key)), "invalid_scope", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			grant := tc.grant
			if grant == "" {
				grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
			}
			resp, err := http.PostForm(m.TokenURL(), url.Values{"grant_type": {grant}, "assertion": {tc.assertion}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				AccessToken string `json:"access_token"`
				ExpiresIn   int    `json:"expires_in"`
				TokenType   string `json:"token_type"`
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if tc.err == "" {
				if resp.StatusCode != 200 || body.AccessToken == "" || body.TokenType != "Bearer" || body.ExpiresIn < 3000 {
					t.Errorf("got %d %+v", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != 400 || body.Error != tc.err || !strings.Contains(body.Description, tc.desc) || body.AccessToken != "" {
				t.Errorf("got %d %+v, want 400 %s %q", resp.StatusCode, body, tc.err, tc.desc)
			}
		})
	}
}

func TestFCMLatencyIsConcurrent(t *testing.T) {
	const n, lat = 100, 40 * time.Millisecond
	m := startFCM(t, mock.FCMConfig{Latency: lat})
	sa, _ := serviceAccount(t, m, project)
	c := fcmClient(t, m, sa, project)
	if _, err := c.Send(context.Background(), &messaging.Message{Token: "warm"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if _, err := c.Send(context.Background(), &messaging.Message{Token: fmt.Sprintf("t%d", i)}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if elapsed < lat || elapsed > 1500*time.Millisecond {
		t.Errorf("%d sends with %v latency took %v, want between %v and 1.5s", n, lat, elapsed, lat)
	}
	if s := m.Stats(); s.MaxInFlight < 20 {
		t.Errorf("at most %d sends in flight at once, want many", s.MaxInFlight)
	}
	t.Logf("%d concurrent sends with %v latency: %v, max in flight %d", n, lat, elapsed, m.Stats().MaxInFlight)
}

// TestFCMOverTLS points the Admin SDK at the mock serving HTTPS with HTTP/2:
// its token and send requests go through clients that trust the mock.
func TestFCMOverTLS(t *testing.T) {
	m := startFCM(t, mock.FCMConfig{TLS: true})
	sa, _ := serviceAccount(t, m, project)
	tr := &http.Transport{TLSClientConfig: m.TLSConfig(), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: tr})
	creds, err := google.CredentialsFromJSON(ctx, sa, mock.ScopeMessaging)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &oauth2.Transport{Source: creds.TokenSource, Base: tr}}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: project}, option.WithHTTPClient(hc), option.WithEndpoint(m.Endpoint()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, &messaging.Message{Token: "t"}); err != nil {
		t.Fatal(err)
	}
	if r := m.Records()[0]; r.Proto != "HTTP/2.0" || r.Status != 200 {
		t.Errorf("record = %+v", r)
	}
	// A client with the system's roots does not reach it (and retries
	// until the context ends).
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = fcmClient(t, m, sa, project).Send(short, &messaging.Message{Token: "t"})
	if err == nil || m.Stats().Requests != 1 {
		t.Errorf("a client with the system's roots: err %v, %d requests recorded, want an error and 1", err, m.Stats().Requests)
	}
}
