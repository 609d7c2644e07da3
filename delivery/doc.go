// Package delivery is the provider layer of the dispatcher: a delivery of
// the scheduler (engage.deliveries) becomes an APNs request through
// github.com/sideshow/apns2 or an FCM HTTP v1 message through
// firebase.google.com/go/v4, and each provider's answer is classified the
// way a serious sender acts on it (Result):
//
//   - Sent, with the provider's id;
//   - TokenDead: the token will never work again (APNs 400 BadDeviceToken
//     and DeviceTokenNotForTopic, 410 Unregistered and ExpiredToken; FCM
//     UNREGISTERED, SENDER_ID_MISMATCH, INVALID_ARGUMENT about the token):
//     not retried, the token is dropped until the device sends a new one;
//   - Retry: the provider is busy or failing (APNs 429, 500, 503; FCM
//     QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL and the project-quota 429 that
//     the firebase client does not classify as quota; network errors),
//     with the provider's Retry-After when it gave one;
//   - AuthFailed: the app's credentials are refused (APNs
//     InvalidProviderToken, BadCertificate, a revoked key; FCM
//     THIRD_PARTY_AUTH_ERROR, a refused service account): the app pauses,
//     the others go on;
//   - Refused: this message can never be sent as it is (a payload too
//     large, a bad collapse id): not retried, the token kept.
//
// APNs ExpiredProviderToken is not a failure of the app: the sender makes
// a new provider token and tries once more.
//
// The mock servers in delivery/mock speak both protocols for the tests and
// the benchmarks.
package delivery
