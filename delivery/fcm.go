package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// FCMConfig is one app's Firebase project: its service account (the JSON
// key file's content) and project id.
type FCMConfig struct {
	ServiceAccount []byte
	ProjectID      string
	// Endpoint replaces Google's FCM endpoint (a mock); HTTPClient, when
	// set, is the client for it.
	Endpoint   string
	HTTPClient *http.Client
}

// FCM sends one app's deliveries through the FCM HTTP v1 API with the
// firebase client (OAuth2 tokens from the service account, refreshed by
// it). Safe for concurrent use.
type FCM struct {
	client *messaging.Client
}

// NewFCM checks the service account and prepares the client.
func NewFCM(ctx context.Context, cfg FCMConfig) (*FCM, error) {
	if len(cfg.ServiceAccount) == 0 {
		return nil, errors.New("fcm: the app's service account (JSON key) is required")
	}
	opts := []option.ClientOption{option.WithCredentialsJSON(cfg.ServiceAccount)}
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: cfg.ProjectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	c, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	return &FCM{client: c}, nil
}

// Send sends one delivery and classifies Google's answer.
func (f *FCM) Send(ctx context.Context, d *scheduler.DeliveryMessage) Result {
	m, err := FCMMessage(d)
	if err != nil {
		return Result{Kind: Refused, Reason: err.Error()}
	}
	name, err := f.client.Send(ctx, m)
	if err != nil && ctx.Err() != nil {
		return Result{Kind: Retry, Reason: "stopped: " + ctx.Err().Error()}
	}
	return classifyFCM(name, err, time.Now())
}

// classifyFCM maps the firebase client's answer to a Result.
func classifyFCM(name string, err error, now time.Time) Result {
	if err == nil {
		return Result{Kind: Sent, ProviderID: name}
	}
	r := Result{Reason: fcmCode(err)}
	if resp := errorutils.HTTPResponse(err); resp != nil {
		r.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
	}
	switch {
	case messaging.IsUnregistered(err), messaging.IsSenderIDMismatch(err):
		r.Kind = TokenDead
	case messaging.IsInvalidArgument(err) && aboutToken(err):
		r.Kind = TokenDead
	case messaging.IsQuotaExceeded(err), messaging.IsUnavailable(err), messaging.IsInternal(err),
		errorutils.IsResourceExhausted(err), errorutils.IsUnavailable(err), errorutils.IsInternal(err), errorutils.IsDeadlineExceeded(err):
		r.Kind = Retry
	case messaging.IsThirdPartyAuthError(err), errorutils.IsUnauthenticated(err), errorutils.IsPermissionDenied(err), oauthRefused(err):
		r.Kind = AuthFailed
	case errorutils.HTTPResponse(err) == nil:
		r.Kind, r.Reason = Retry, "network: "+err.Error() // no answer at all
	default:
		r.Kind = Refused
	}
	return r
}

// fcmCode is the FCM error code of err when it has one, else its text.
func fcmCode(err error) string {
	for _, c := range []struct {
		is   func(error) bool
		code string
	}{
		{messaging.IsUnregistered, "UNREGISTERED"}, {messaging.IsSenderIDMismatch, "SENDER_ID_MISMATCH"},
		{messaging.IsQuotaExceeded, "QUOTA_EXCEEDED"}, {messaging.IsUnavailable, "UNAVAILABLE"}, {messaging.IsInternal, "INTERNAL"},
		{messaging.IsThirdPartyAuthError, "THIRD_PARTY_AUTH_ERROR"}, {messaging.IsInvalidArgument, "INVALID_ARGUMENT"},
		{errorutils.IsResourceExhausted, "RESOURCE_EXHAUSTED"}, {errorutils.IsUnauthenticated, "UNAUTHENTICATED"},
		{errorutils.IsPermissionDenied, "PERMISSION_DENIED"},
	} {
		if c.is(err) {
			return c.code
		}
	}
	return err.Error()
}

// aboutToken tells an INVALID_ARGUMENT about the registration token (dead)
// from one about the message (refused, the token kept).
func aboutToken(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "registration token") || strings.Contains(s, "not a valid fcm")
}

// oauthRefused reports a service account refused by the token endpoint
// (a revoked key: invalid_grant), which is no FCM error.
func oauthRefused(err error) bool {
	s := err.Error()
	return strings.Contains(s, "oauth2") && (strings.Contains(s, "invalid_grant") || strings.Contains(s, "invalid_client") || strings.Contains(s, "unauthorized_client"))
}

// FCMMessage is the HTTP v1 message for a delivery: a notification
// (title, body, image) with the campaign's data, or data alone for a data
// push; the delivery id, campaign and deep link in the data for the app;
// the android section (collapse key, priority, time to live, sound), the
// apns one (priority, collapse id, aps: sound, badge, mutable-content, or
// content-available for data) and the webpush one (the notification, and
// the link when the deep link is a web address).
func FCMMessage(d *scheduler.DeliveryMessage) (*messaging.Message, error) {
	if d.PushToken == "" {
		return nil, errors.New("no push token")
	}
	m := d.Message
	data := map[string]string{"engage_delivery_id": d.ID, "engage_campaign": d.Campaign}
	for k, v := range m.Data {
		data[k] = v
	}
	if m.DeepLink != "" {
		data["engage_deep_link"] = m.DeepLink
	}
	msg := &messaging.Message{Token: d.PushToken, Data: data, Android: &messaging.AndroidConfig{CollapseKey: m.CollapseID, Priority: "high"}}
	if m.Priority == string(triggers.PriorityNormal) || d.Channel == triggers.ChannelData {
		msg.Android.Priority = "normal"
	}
	// The same message for an iOS app or a web app registered with FCM:
	// the apns section (Apple's headers and aps) and the webpush one.
	apnsPriority := "10"
	if msg.Android.Priority == "normal" {
		apnsPriority = "5"
	}
	msg.APNS = &messaging.APNSConfig{Headers: map[string]string{"apns-priority": apnsPriority}, Payload: &messaging.APNSPayload{Aps: &messaging.Aps{}}}
	if m.CollapseID != "" {
		msg.APNS.Headers["apns-collapse-id"] = m.CollapseID
	}
	if d.Channel == triggers.ChannelData {
		msg.APNS.Headers["apns-push-type"] = "background"
		msg.APNS.Payload.Aps.ContentAvailable = true
	} else {
		msg.Notification = &messaging.Notification{Title: m.Title, Body: m.Body, ImageURL: m.Image}
		if m.Sound != "" {
			msg.Android.Notification = &messaging.AndroidNotification{Sound: m.Sound}
			msg.APNS.Payload.Aps.Sound = m.Sound
		}
		msg.APNS.Payload.Aps.Badge = m.Badge
		msg.APNS.Payload.Aps.MutableContent = m.Image != ""
		msg.Webpush = &messaging.WebpushConfig{Notification: &messaging.WebpushNotification{Title: m.Title, Body: m.Body, Image: m.Image}}
		if strings.HasPrefix(m.DeepLink, "https://") {
			msg.Webpush.FCMOptions = &messaging.WebpushFCMOptions{Link: m.DeepLink}
		}
	}
	var ttl time.Duration
	switch {
	case d.Expires != nil:
		ttl = d.Expires.Sub(d.Time)
	case m.TTLSeconds > 0:
		ttl = time.Duration(m.TTLSeconds) * time.Second
	}
	if ttl > 0 {
		msg.Android.TTL = &ttl
	}
	return msg, nil
}
