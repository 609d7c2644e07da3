package mock

import (
	"net/http"
	"time"
)

// The reasons APNs puts in an error answer's JSON body, as Apple's "Handling
// notification responses from APNs" lists them, each with its status code in
// apnsStatus.
const (
	ReasonBadCollapseID               = "BadCollapseId"
	ReasonBadDeviceToken              = "BadDeviceToken"
	ReasonBadExpirationDate           = "BadExpirationDate"
	ReasonBadMessageID                = "BadMessageId"
	ReasonBadPriority                 = "BadPriority"
	ReasonBadTopic                    = "BadTopic"
	ReasonDeviceTokenNotForTopic      = "DeviceTokenNotForTopic"
	ReasonDuplicateHeaders            = "DuplicateHeaders"
	ReasonIdleTimeout                 = "IdleTimeout"
	ReasonInvalidPushType             = "InvalidPushType"
	ReasonMissingDeviceToken          = "MissingDeviceToken"
	ReasonMissingTopic                = "MissingTopic"
	ReasonPayloadEmpty                = "PayloadEmpty"
	ReasonTopicDisallowed             = "TopicDisallowed"
	ReasonBadCertificate              = "BadCertificate"
	ReasonBadCertificateEnvironment   = "BadCertificateEnvironment"
	ReasonExpiredProviderToken        = "ExpiredProviderToken"
	ReasonForbidden                   = "Forbidden"
	ReasonInvalidProviderToken        = "InvalidProviderToken"
	ReasonMissingProviderToken        = "MissingProviderToken"
	ReasonBadPath                     = "BadPath"
	ReasonMethodNotAllowed            = "MethodNotAllowed"
	ReasonExpiredToken                = "ExpiredToken"
	ReasonUnregistered                = "Unregistered"
	ReasonPayloadTooLarge             = "PayloadTooLarge"
	ReasonTooManyProviderTokenUpdates = "TooManyProviderTokenUpdates"
	ReasonTooManyRequests             = "TooManyRequests"
	ReasonInternalServerError         = "InternalServerError"
	ReasonServiceUnavailable          = "ServiceUnavailable"
	ReasonShutdown                    = "Shutdown"
)

var apnsStatus = map[string]int{
	ReasonBadCollapseID:               http.StatusBadRequest,
	ReasonBadDeviceToken:              http.StatusBadRequest,
	ReasonBadExpirationDate:           http.StatusBadRequest,
	ReasonBadMessageID:                http.StatusBadRequest,
	ReasonBadPriority:                 http.StatusBadRequest,
	ReasonBadTopic:                    http.StatusBadRequest,
	ReasonDeviceTokenNotForTopic:      http.StatusBadRequest,
	ReasonDuplicateHeaders:            http.StatusBadRequest,
	ReasonIdleTimeout:                 http.StatusBadRequest,
	ReasonInvalidPushType:             http.StatusBadRequest,
	ReasonMissingDeviceToken:          http.StatusBadRequest,
	ReasonMissingTopic:                http.StatusBadRequest,
	ReasonPayloadEmpty:                http.StatusBadRequest,
	ReasonTopicDisallowed:             http.StatusBadRequest,
	ReasonBadCertificate:              http.StatusForbidden,
	ReasonBadCertificateEnvironment:   http.StatusForbidden,
	ReasonExpiredProviderToken:        http.StatusForbidden,
	ReasonForbidden:                   http.StatusForbidden,
	ReasonInvalidProviderToken:        http.StatusForbidden,
	ReasonMissingProviderToken:        http.StatusForbidden,
	ReasonBadPath:                     http.StatusNotFound,
	ReasonMethodNotAllowed:            http.StatusMethodNotAllowed,
	ReasonExpiredToken:                http.StatusGone,
	ReasonUnregistered:                http.StatusGone,
	ReasonPayloadTooLarge:             http.StatusRequestEntityTooLarge,
	ReasonTooManyProviderTokenUpdates: http.StatusTooManyRequests,
	ReasonTooManyRequests:             http.StatusTooManyRequests,
	ReasonInternalServerError:         http.StatusInternalServerError,
	ReasonServiceUnavailable:          http.StatusServiceUnavailable,
	ReasonShutdown:                    http.StatusServiceUnavailable,
}

// APNsStatus is the status code Apple documents for an error reason, or 0
// for a reason Apple does not list.
func APNsStatus(reason string) int { return apnsStatus[reason] }

// APNsAnswer is what the APNs mock answers a request that a rule matches.
type APNsAnswer struct {
	// Status is the HTTP status; 0 means the one Apple documents for Reason.
	Status int
	// Reason goes in the JSON body ({"reason": "..."}).
	Reason string
	// Timestamp is when the token stopped being valid, sent in milliseconds
	// with a 410 answer; zero means the time of the request.
	Timestamp time.Time
	// RetryAfter, when positive, is sent as a Retry-After header in seconds
	// (Apple documents none; a sender should still honour one).
	RetryAfter time.Duration
}

// APNsReject is the answer with reason and the status Apple documents for it.
func APNsReject(reason string) APNsAnswer {
	return APNsAnswer{Status: APNsStatus(reason), Reason: reason}
}

func (a APNsAnswer) status() int {
	if a.Status != 0 {
		return a.Status
	}
	if s := APNsStatus(a.Reason); s != 0 {
		return s
	}
	return http.StatusBadRequest
}
