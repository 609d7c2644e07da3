package mock

import (
	"encoding/json"
	"hash/fnv"
	"net/http"
	"strconv"
	"time"
)

// The FcmError codes of the FCM HTTP v1 ErrorCode reference.
const (
	FCMInvalidArgument     = "INVALID_ARGUMENT"
	FCMUnregistered        = "UNREGISTERED"
	FCMSenderIDMismatch    = "SENDER_ID_MISMATCH"
	FCMQuotaExceeded       = "QUOTA_EXCEEDED"
	FCMUnavailable         = "UNAVAILABLE"
	FCMInternal            = "INTERNAL"
	FCMThirdPartyAuthError = "THIRD_PARTY_AUTH_ERROR"
)

const fcmErrorType = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

// fcmCodes gives each FcmError code the HTTP status the reference documents,
// the google.rpc.Code name that goes with it and FCM's message.
var fcmCodes = map[string]struct {
	status  int
	rpc     string
	message string
}{
	FCMInvalidArgument:     {http.StatusBadRequest, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"},
	FCMUnregistered:        {http.StatusNotFound, "NOT_FOUND", "Requested entity was not found."},
	FCMSenderIDMismatch:    {http.StatusForbidden, "PERMISSION_DENIED", "SenderId mismatch"},
	FCMQuotaExceeded:       {http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded."},
	FCMUnavailable:         {http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable."},
	FCMInternal:            {http.StatusInternalServerError, "INTERNAL", "Internal error encountered."},
	FCMThirdPartyAuthError: {http.StatusUnauthorized, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"},
}

// FCMAnswer is what the FCM mock answers a send that a rule matches. The
// zero value accepts the message.
type FCMAnswer struct {
	// Code is an FcmError code (FCMUnregistered, …): the answer carries the
	// documented status and the FcmError detail with this errorCode.
	Code string
	// ProjectQuota answers the project's send quota exceeded as Google's API
	// front end does: 429 RESOURCE_EXHAUSTED with a google.rpc.ErrorInfo
	// (RATE_LIMIT_EXCEEDED) and no FcmError, which the Admin SDK's
	// IsQuotaExceeded does not recognise (firebase-admin-go issue 719).
	ProjectQuota bool
	// Status overrides the HTTP status; Message the error message.
	Status  int
	Message string
	// RetryAfter, when positive, is sent as a Retry-After header in seconds.
	RetryAfter time.Duration
}

// FCMReject is the documented answer for an FcmError code.
func FCMReject(code string) FCMAnswer { return FCMAnswer{Code: code} }

// FCMProjectQuotaExceeded is the project-quota answer; see FCMAnswer.
var FCMProjectQuotaExceeded = FCMAnswer{ProjectQuota: true}

func (a FCMAnswer) accepts() bool { return a.Code == "" && !a.ProjectQuota }

// googleError is a google.rpc.Status error answer:
// {"error": {"code", "message", "status", "details"}}.
type googleError struct {
	code    int
	status  string
	message string
	details []any
}

// key is what Stats and records count the error under: the FcmError code
// if there is one, else the status.
func (e *googleError) key() string {
	for _, d := range e.details {
		if m, ok := d.(map[string]any); ok && m["@type"] == fcmErrorType {
			return m["errorCode"].(string)
		}
	}
	return e.status
}

func (e *googleError) write(w http.ResponseWriter, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	body := map[string]any{"code": e.code, "message": e.message, "status": e.status}
	if len(e.details) > 0 {
		body["details"] = e.details
	}
	writeJSON(w, e.code, map[string]any{"error": body})
}

func fcmErrorDetail(code string) map[string]any {
	return map[string]any{"@type": fcmErrorType, "errorCode": code}
}

func errorInfo(reason string, metadata map[string]string) map[string]any {
	if metadata == nil {
		metadata = map[string]string{}
	}
	metadata["service"] = "fcm.googleapis.com"
	metadata["method"] = "google.firebase.fcm.v1.FcmService.SendMessage"
	return map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com", "metadata": metadata}
}

// answerError is the error for a rule's answer.
func answerError(a FCMAnswer, project string) *googleError {
	var e *googleError
	if a.ProjectQuota {
		e = projectQuotaError(project)
	} else {
		c, ok := fcmCodes[a.Code]
		if !ok {
			c.status, c.rpc, c.message = http.StatusBadRequest, "INVALID_ARGUMENT", "Request contains an invalid argument."
		}
		e = &googleError{code: c.status, status: c.rpc, message: c.message, details: []any{fcmErrorDetail(a.Code)}}
		if a.Code == FCMQuotaExceeded {
			e.details = append(e.details, map[string]any{
				"@type":      "type.googleapis.com/google.rpc.QuotaFailure",
				"violations": []any{map[string]any{"description": "Device message rate exceeded."}},
			})
		}
	}
	if a.Status != 0 {
		e.code = a.Status
	}
	if a.Message != "" {
		e.message = a.Message
	}
	return e
}

func projectQuotaError(project string) *googleError {
	h := fnv.New64a()
	_, _ = h.Write([]byte(project))
	number := strconv.FormatUint(h.Sum64()%1e12, 10)
	return &googleError{
		code:   http.StatusTooManyRequests,
		status: "RESOURCE_EXHAUSTED",
		message: "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' of service " +
			"'fcm.googleapis.com' for consumer 'project_number:" + number + "'.",
		details: []any{
			errorInfo("RATE_LIMIT_EXCEEDED", map[string]string{
				"consumer": "projects/" + number, "quota_metric": "fcm.googleapis.com/send_requests",
				"quota_limit": "SendsPerMinutePerProject", "quota_unit": "1/min/{project}",
				"quota_location": "global", "quota_limit_value": "600000",
			}),
			map[string]any{"@type": "type.googleapis.com/google.rpc.Help", "links": []any{map[string]any{
				"description": "Request a higher quota limit.",
				"url":         "https://cloud.google.com/docs/quotas/help/request_increase",
			}}},
		},
	}
}

// violationError is the INVALID_ARGUMENT answer for a refused message.
func violationError(v *violation) *googleError {
	e := &googleError{code: http.StatusBadRequest, status: "INVALID_ARGUMENT", message: v.message}
	if v.fcm {
		e.details = append(e.details, fcmErrorDetail(FCMInvalidArgument))
	}
	if !v.noDetail {
		fv := map[string]any{"description": v.message}
		if v.field != "" {
			fv["field"] = v.field
		}
		e.details = append(e.details, map[string]any{
			"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": []any{fv},
		})
	}
	return e
}

const (
	msgMissingCredential = "Request is missing required authentication credential. Expected OAuth 2 access token, " +
		"login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
	msgInvalidCredential = "Request had invalid authentication credentials. Expected OAuth 2 access token, " +
		"login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)

var (
	errCredentialsMissing = &googleError{code: http.StatusUnauthorized, status: "UNAUTHENTICATED", message: msgMissingCredential,
		details: []any{errorInfo("CREDENTIALS_MISSING", nil)}}
	errTokenUnsupported = &googleError{code: http.StatusUnauthorized, status: "UNAUTHENTICATED", message: msgInvalidCredential,
		details: []any{errorInfo("ACCESS_TOKEN_TYPE_UNSUPPORTED", nil)}}
	errTokenExpired = &googleError{code: http.StatusUnauthorized, status: "UNAUTHENTICATED", message: msgInvalidCredential,
		details: []any{errorInfo("ACCESS_TOKEN_EXPIRED", nil)}}
	errScopeInsufficient = &googleError{code: http.StatusForbidden, status: "PERMISSION_DENIED", message: "Request had insufficient authentication scopes.",
		details: []any{errorInfo("ACCESS_TOKEN_SCOPE_INSUFFICIENT", nil)}}
)

func errPermissionDenied(project string) *googleError {
	return &googleError{code: http.StatusForbidden, status: "PERMISSION_DENIED",
		message: "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/" +
			project + "' (or it may not exist).",
		details: []any{errorInfo("IAM_PERMISSION_DENIED", map[string]string{"permission": "cloudmessaging.messages.create"})}}
}

// decodeTop splits the request body into its message and validate_only.
func decodeTop(body []byte) (json.RawMessage, bool, *violation) {
	ms, ok := members(body)
	if !ok {
		return nil, false, &violation{message: "Invalid JSON payload received. Expected an object."}
	}
	var message json.RawMessage
	validateOnly := false
	for _, m := range ms {
		switch lowerCamel(m.name) {
		case "message":
			message = m.val
		case "validateOnly":
			if isNull(m.val) {
				continue
			}
			if json.Unmarshal(m.val, &validateOnly) != nil {
				return nil, false, invalidValue("validate_only", boolean, m.val)
			}
		default:
			return nil, false, &violation{message: "Invalid JSON payload received. Unknown name \"" + m.name + "\": Cannot find field."}
		}
	}
	return message, validateOnly, nil
}
