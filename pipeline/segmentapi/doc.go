// Package segmentapi decodes the Segment HTTP Tracking API
// (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/)
// and maps its messages to tag records, so that apps using Segment's SDKs
// can send to the collector by pointing the SDK's API host at it. The
// collector's handlers call DecodeBatch for POST /v1/batch and DecodeSingle
// for POST /v1/track, /v1/screen, /v1/page, /v1/identify, /v1/group and
// /v1/alias; they set the app from the write key and the receive time in
// the tag.Envelope.
//
// It is part of the pure core: it imports only the standard library and the
// tag package.
//
// # Mapping
//
// Every message:
//
//	| Segment                                                           | Tag record                                                                                            |
//	|-------------------------------------------------------------------|-------------------------------------------------------------------------------------------------------|
//	| context.device.id, else anonymousId, else userId                  | DeviceID (all three missing: error on anonymousId)                                                    |
//	| userId                                                            | UserID (ids may be JSON strings or numbers)                                                           |
//	| messageId                                                         | MessageID; if absent, tag.GenerateID over the record and the client time, so a retry gets the same id |
//	| timestamp, else originalTimestamp                                 | the client time: RFC 3339, with or without fractional seconds; a bad one is an error on that field    |
//	| sentAt of the message, else the top-level sentAt of the batch     | SentAt; Time = tag.CorrectSkew(client time, sentAt, receive time)                                     |
//	| context.sessionId (RudderStack's SDKs; a string or a number)      | SessionID of every record of the message (an unusable one is dropped with a warning)                   |
//
// Each call:
//
//	| Call                                    | Records                                                                                                                    |
//	|-----------------------------------------|----------------------------------------------------------------------------------------------------------------------------|
//	| track                                   | event named event; properties → extras                                                                                     |
//	| track, event declared a job (Declarer)  | job named event; Duration = properties.duration (seconds), else properties.durationMs; both left out of the extras; missing or not a positive number: error |
//	| track, event declared an error          | error named event; properties → extras                                                                                     |
//	| screen                                  | activity_start named name; properties → extras; category → extra "category" unless properties has one                     |
//	| page                                    | as screen, named name, else properties.name, else properties.path                                                          |
//	| identify                                | app_info with the traits (none if no trait is kept), and the device record                                                |
//	| group (our choice)                      | app_info with each trait as group_<key>, and group_id = groupId                                                            |
//	| alias (our choice)                      | event named "$alias" with extras previous_id = previousId and user_id = userId                                             |
//	| any call with context.sessionStart true and a context.sessionId | its records, after a session_start of that session                                                  |
//
// The application lifecycle events of Segment's Native Mobile Spec, which
// Segment's and RudderStack's iOS and Android SDKs send by themselves
// (track calls, names as spelled here), stay events, properties → extras,
// and give the session and device records they imply:
//
//	| track event                | Records                                                                                                                                      |
//	|----------------------------|----------------------------------------------------------------------------------------------------------------------------------------------|
//	| "Application Opened"       | without context.sessionId (Segment's SDKs): a session_start whose session id is the message id of the event, then the event, in that session |
//	|                            | with context.sessionId (RudderStack's): the event only; the session_start comes with context.sessionStart                                    |
//	| "Application Backgrounded" | the event, then a session_end: of context.sessionId, else with no session id                                                               |
//	| "Application Installed",   | a device record (always, as for identify), then the event. properties.version and properties.build stand for context.app.version and        |
//	| "Application Updated"      | context.app.build when the context has none (and give the records' AppVersion); previous_version and previous_build are extras of the event |
//
// The implied session records share the message's time, ids and app
// version; their message id is "d-" and a hash of the kind and the
// message's messageId (tag.GenerateID over the record when it has none),
// so that a retry gives the same id and no two records share one.
//
// Sessions, then. An app whose only SDK is Segment's starts a session at
// each launch and each return to the foreground (both are Application
// Opened), so first_session, "did session" and the session counts and
// retention of the analytics work. Its sessions have no known length:
// Application Backgrounded names no session, and the collector keeps no
// state between requests to pair it with the last Opened (pairing within
// a request would give lengths only to sessions short enough to fit in
// one batch). Its session_end records say when the device's session ended;
// the sessions table, which folds session_start and session_end by session
// id, leaves them out. RudderStack's sessions have their SDK's id and
// extent: they go on across short trips to the background (its session
// timeout), and their length runs from the session_start to the last
// Application Backgrounded.
//
// The device record (kind device) maps the context:
//
//	| DeviceInfo                | Segment context                                                                                                                              |
//	|---------------------------|----------------------------------------------------------------------------------------------------------------------------------------------|
//	| Platform                  | device.type, else os.name, in any case: ios, ipados → ios; android, web, windows, macos → themselves; anything else → other                  |
//	| AppVersion                | app.version                                                                                                                                  |
//	| AppBuild                  | app.build (a string or a number)                                                                                                             |
//	| OSVersion                 | os.version                                                                                                                                   |
//	| Model                     | device.model                                                                                                                                 |
//	| Manufacturer              | device.manufacturer                                                                                                                          |
//	| Locale                    | locale                                                                                                                                       |
//	| TimeZone                  | timezone                                                                                                                                     |
//	| Country                   | location.country if it is two letters, upper-cased; else dropped                                                                             |
//	| PushToken, PushProvider   | device.token; platform ios → apns (apns-sandbox if device.tokenEnvironment or device.apnsEnvironment is sandbox or development); android → fcm; any other platform → token dropped (its provider is unknown) |
//
// A message gives a device record, placed before its other records, when
// its context (over the batch's top-level context) gives any of these
// fields and: it is an identify call or an Application Installed or
// Updated; or its device id has not appeared in
// the request yet with device info; or its device info differs from the one
// last emitted for that device id in the request (an app upgraded while
// the SDK queued its batch). So a batch of 100 track calls from one device
// yields 100 events and 1 device record. Its MessageID is tag.GenerateID
// over the device record and the client time, so that retries dedupe.
// Context fields that the tag model refuses (an unknown time zone, a
// malformed locale, an APNs token that is not hexadecimal) are dropped, not
// errors: SDKs fill the context, not the app's developer.
//
// Properties and traits become extras (app-info for identify and group):
//
//   - First-level keys; string, number and bool values keep their type. A
//     string that looks like a time stays a string: the tag plan coerces.
//   - A nested object is flattened one level: {"address": {"city": "Paris"}}
//     gives address_city. Deeper objects, arrays and nulls are dropped.
//   - A key that is not valid under tag.ValidKey has each character other
//     than an ASCII letter, digit or _ replaced by _, and x_ prepended if it
//     does not start with a letter ("my-key" → my_key, "9lives" → x_9lives);
//     if still invalid (empty, longer than tag.MaxKeyLen) it is dropped.
//   - When two keys end up the same, a key kept as sent wins over a renamed
//     one, which wins over a flattened one; among renamed or flattened ones,
//     the first by the Segment field it came from ("a b" before a-b,
//     a.b_c before a_b.c); among the same field repeated, the first sent.
//     The others are dropped.
//   - At most tag.MaxExtras keys are kept: group_id and category first, then
//     the others in key order.
//   - A string longer than tag.MaxValueLen is an error on properties.<key>
//     (or traits.<key>); a number out of range is dropped.
//
// Ignored without error: integrations, _metadata, channel, context.library,
// context.ip, context.userAgent, context.page, context.campaign and every
// other context field not above, writeKey, version, channel, receivedAt and
// any other field not named here.
//
// # Results and errors
//
// Each message gives a Result: its records, or a *MessageError naming the
// message's index, the Segment field and the rule (an unknown type, a
// missing event name, a bad timestamp, a message over MaxMessageBytes
// (32 KB), a record that tag.Record.Validate refuses…). A bad message never
// costs the others. What a message carried that no record keeps is listed
// in Result.Dropped as "<Segment field>: <why>", for the collector to
// return as warnings: of the properties or traits dropped, the first ten
// found, then one entry counting the others ("properties: 190 more dropped
// fields not listed (at most 10 a message)"). Only a body that is unusable as a whole (malformed
// JSON, with the byte offset; not an object; batch missing or not an array;
// a bad top-level sentAt) is an error of DecodeBatch or DecodeSingle. The
// 500 KB limit of a batch body is the caller's.
package segmentapi
