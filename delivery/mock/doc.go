// Package mock holds servers that speak the real protocols of Apple's push
// service (APNs) and of Firebase Cloud Messaging's HTTP v1 API, for tests
// and benchmarks: the real client libraries (github.com/sideshow/apns2,
// firebase.google.com/go/v4/messaging) work against them unchanged but for
// the endpoint and, for APNs, the TLS roots. Each mock checks what it
// receives against the provider's documented shapes, records it, can be told
// to answer any documented error, and adds a latency without serialising
// requests. Nothing here imports a client library.
//
// # APNs
//
// StartAPNs serves HTTP/2 over TLS (httptest, a certificate for 127.0.0.1)
// with up to MaxConcurrentStreams streams per connection. POST
// /3/device/{token} is checked in Apple's order of concerns:
//
//   - method POST (405 MethodNotAllowed), path (404 BadPath), a device token
//     in it (400 MissingDeviceToken);
//   - authentication: "authorization: bearer <JWT>" with header alg ES256
//     and the kid of a key registered with RegisterKey or NewKey, claim iss
//     its team, iat not older than one hour (403 ExpiredProviderToken), the
//     signature checked against the key; anything else, or a key revoked
//     with RevokeKey, is 403 InvalidProviderToken. A second token on one
//     connection sooner than 20 minutes after the first is 429
//     TooManyProviderTokenUpdates. Without the header, the TLS client
//     certificate (IssueCertificate, signed by the mock's own CA) is checked:
//     unknown or revoked is 403 BadCertificate; no certificate either is 403
//     MissingProviderToken;
//   - headers: repeated apns-* (DuplicateHeaders), apns-topic (MissingTopic;
//     a certificate with one topic supplies it; a topic outside the key's or
//     the certificate's is TopicDisallowed), apns-id a UUID (BadMessageId),
//     apns-priority 10, 5 or 1 (BadPriority), apns-expiration a UNIX time in
//     seconds (BadExpirationDate), apns-collapse-id at most 64 bytes
//     (BadCollapseId), apns-push-type one of Apple's with the topic suffix
//     it requires (.voip, .complication, …) (InvalidPushType);
//   - the device token: hexadecimal, 64 to 200 digits (BadDeviceToken);
//     registered with another topic (DeviceTokenNotForTopic);
//   - the payload: not empty (PayloadEmpty), at most 4096 bytes, 5120 for
//     VoIP (413 PayloadTooLarge), a JSON object with an aps dictionary; a
//     background push needs content-available 1 and priority 5
//     (BadPriority).
//
// Then the rules (AddRule): the first that matches the token and topic
// answers, for example APNsReject(ReasonUnregistered) (410 with the
// timestamp in milliseconds) or 503 ServiceUnavailable with Retry-After.
// Otherwise 200 with apns-id (the request's, or a new UUID), and
// apns-unique-id in Development. Error bodies are {"reason": "..."}.
//
// Where Apple documents no reason the mock chooses one, and says so: a body
// that is not a JSON object with an aps dictionary is PayloadEmpty; a
// background push without content-available 1 and a push type whose topic
// lacks the required suffix are InvalidPushType; an iat more than a minute
// in the future is InvalidProviderToken; a token and a certificate on one
// request: the token counts.
//
// Clients: for apns2, set Client.Host to URL() and the root CAs of its
// *http2.Transport (Client.HTTPClient.Transport) to CertPool().
//
// A client that cannot be given another host (gorush: apns2's fixed
// api.push.apple.com / api.sandbox.push.apple.com) but can be given a proxy
// reaches the mock with APNsConfig.Connect: the mock then makes its own CA
// (CAPEM, for SSL_CERT_FILE) and a server certificate from it naming Apple's
// two hosts, localhost and 127.0.0.1, and listens on a plain-HTTP loopback
// port (ConnectURL) for "CONNECT api.sandbox.push.apple.com:443" (or
// api.push.apple.com, port 443 or 2197; other targets 403, other methods
// 405). It answers 200 and terminates TLS on the tunnelled connection in
// process, serving it with the same HTTP/2 server as its TLS port: same
// checks, rules, latency, records and stats. Records say where a request
// came: Host (its authority) and Tunnel (the CONNECT target, "" for the TLS
// port). Package gorush runs the real gorush binary against it.
//
// # FCM
//
// StartFCM serves plain HTTP (or HTTPS with HTTP/2 when FCMConfig.TLS) with
// two endpoints:
//
//   - POST /token, Google's OAuth 2.0 token endpoint for service accounts:
//     grant_type urn:ietf:params:oauth:grant-type:jwt-bearer and an RS256
//     assertion signed by a key registered with NewServiceAccount or
//     RegisterServiceAccount, iss the account, aud the token URL, iat and
//     exp at most an hour apart and current, a scope. Errors are Google's:
//     400 invalid_grant ("Invalid JWT Signature.", …), invalid_scope,
//     unsupported_grant_type. It answers an access token valid one hour.
//   - POST /v1/projects/{project}/messages:send with "authorization: Bearer
//     <access token>": missing is 401 UNAUTHENTICATED (CREDENTIALS_MISSING),
//     unknown or expired 401 (ACCESS_TOKEN_TYPE_UNSUPPORTED,
//     ACCESS_TOKEN_EXPIRED); a token without the firebase.messaging or
//     cloud-platform scope 403 (ACCESS_TOKEN_SCOPE_INSUFFICIENT); another
//     project's account 403 PERMISSION_DENIED. The body is checked against
//     the REST reference's Message (proto JSON names, camelCase or
//     snake_case): unknown fields, values of the wrong type (data values
//     must be strings, ttl a duration like "3.5s", enums), exactly one of
//     token, topic and condition, topic names, reserved data keys, the data
//     size (4096 bytes, 2048 to topics). Errors are google.rpc.Status bodies
//     with a google.rpc.BadRequest detail, and the FcmError detail where FCM
//     gives one (a missing recipient, an invalid token).
//
// Rules answer FCMReject(code) for the FcmError codes (UNREGISTERED 404,
// INVALID_ARGUMENT 400, SENDER_ID_MISMATCH 403, QUOTA_EXCEEDED 429,
// UNAVAILABLE 503, INTERNAL 500, THIRD_PARTY_AUTH_ERROR 401) with the
// {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
// "errorCode": ...} detail the Admin SDK reads, or FCMProjectQuotaExceeded,
// the project quota's 429 RESOURCE_EXHAUSTED that carries only a
// google.rpc.ErrorInfo and that the SDK's IsQuotaExceeded does not see.
// Success is {"name": "projects/{project}/messages/{id}"}
// (".../fake_message_id" for validate_only).
//
// Clients: the Admin SDK with option.WithCredentialsJSON(NewServiceAccount
// (project)) and option.WithEndpoint(Endpoint()) (plain HTTP: the SDK's
// transport trusts only the system's roots). Over TLS, give it
// option.WithHTTPClient with an oauth2.Transport whose base trusts
// TLSConfig(), the token source from google.CredentialsFromJSON with that
// client in the context (TestFCMOverTLS).
//
// # Recording
//
// Both mocks record every request they answer, accepted or refused, with
// its headers, body, who it authenticated as and the answer: the newest
// KeepRecords in a ring (Records), every one to the OnRecord hook, and
// counts (Stats: requests, accepted, refused by reason, answers forced by a
// rule, the most requests in flight at once).
//
// # Not reproduced
//
// APNs lets a connection authenticated by token have one stream until its
// first valid token, then more; the mock advertises MaxConcurrentStreams
// from the start. No GOAWAY with a reason, no IdleTimeout, no per-device
// throttling of its own (rules give 429), no sandbox/production split (one
// mock is one environment). FCM's HTTP/1.1 batch endpoint (SendAll, retired
// by Google) is not served. Messages are checked for shape, not for meaning
// (an APNs payload inside an FCM message is any object).
//
// Sources:
//   - https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
//   - https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
//   - https://developer.apple.com/documentation/usernotifications/establishing-a-token-based-connection-to-apns
//   - https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send
//   - https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages
//   - https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
//   - https://firebase.google.com/docs/cloud-messaging/error-codes
//   - https://developers.google.com/identity/protocols/oauth2/service-account
//   - https://github.com/firebase/firebase-admin-go/issues/719 (the project-quota 429)
package mock
