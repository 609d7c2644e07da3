// Sends a fixed sequence of calls to an OpenEngage collector using
// RudderStack's official Node SDK (@rudderstack/rudder-sdk-node), then prints
// a one-line JSON summary to stdout. Exit code 0 only if every call was
// delivered (the SDK calls back without error only on a 2xx).
//
// The SDK posts to <dataPlaneUrl>/v1/batch with the write key as the HTTP
// Basic user, and gzips the JSON batch, labelled
// Content-Type: application/x-www-form-urlencoded (axios's default for a
// Buffer) with Content-Encoding: gzip. Its first call is flushed alone, the
// others together at the final flush: two requests.
//
// The calls carry what RudderStack's mobile SDKs put in the context of an
// Android app with session tracking: device, os, app, locale, timezone, and
// context.sessionId (a number), with context.sessionStart on the first.
//
// Env:
//   ENGAGE_HOST        base URL, e.g. http://127.0.0.1:8080 (required)
//   ENGAGE_WRITE_KEY   write key (required)
//   ENGAGE_DEVICE_ID   device id / anonymousId (required)
//   ENGAGE_USER_ID     userId for identified calls (required)
//   ENGAGE_SESSION_ID  context.sessionId, digits (required)
//   ENGAGE_MAX_RETRIES retries per batch on 5xx/429/network errors (default 0)
//
// Sequence (10 calls): track "Application Installed" (sessionStart),
// track "Application Opened", identify, screen "feed", page "home",
// track "article_read", group "acme", alias, track "Application Backgrounded",
// track "Application Opened" (from the background, same session).
import Analytics from '@rudderstack/rudder-sdk-node'

const env = (k, d) => {
  const v = process.env[k] ?? d
  if (v === undefined || v === '') {
    console.error(`missing env ${k}`)
    process.exit(2)
  }
  return v
}
const host = env('ENGAGE_HOST')
const writeKey = env('ENGAGE_WRITE_KEY')
const deviceId = env('ENGAGE_DEVICE_ID')
const userId = env('ENGAGE_USER_ID')
const sessionId = Number(env('ENGAGE_SESSION_ID'))

const errors = []
const analytics = new Analytics(writeKey, {
  dataPlaneUrl: host,
  flushAt: 50, // > number of calls: after the first, everything goes in one batch at flush
  flushInterval: 10000,
  retryCount: Number(env('ENGAGE_MAX_RETRIES', '0')),
  logLevel: 'error',
  errorHandler: (err) => errors.push(`batch: ${err.response ? `${err.response.status} ${JSON.stringify(err.response.data)}` : err.message}`),
})

// Fresh object per call, as the SDK clones and extends it.
const context = (extra = {}) => ({
  device: { id: deviceId, type: 'android', model: 'Pixel 8', manufacturer: 'Google', token: 'fcm-token-0001:APA91bHx' },
  os: { name: 'Android', version: '14' },
  app: { name: 'News', version: '4.2.0', build: '420', namespace: 'com.example.news' },
  locale: 'de-DE',
  timezone: 'Europe/Berlin',
  network: { wifi: true },
  sessionId,
  ...extra,
})
const anon = (extra) => ({ anonymousId: deviceId, context: context(extra) })
const who = () => ({ userId, anonymousId: deviceId, context: context() })

const calls = [
  ['track', { ...anon({ sessionStart: true }), event: 'Application Installed', properties: { version: '4.2.0', build: '420' } }],
  ['track', { ...anon(), event: 'Application Opened', properties: { from_background: false, version: '4.2.0', build: '420' } }],
  ['identify', { ...who(), traits: { plan: 'free', logged_in: false } }],
  ['screen', { ...who(), name: 'feed', properties: { tab: 'top' } }],
  ['page', { ...who(), name: 'home', properties: { path: '/home' } }],
  ['track', { ...who(), event: 'article_read', properties: { category: 'sport', words: 640 } }],
  ['group', { ...who(), groupId: 'acme', traits: { name: 'ACME' } }],
  ['alias', { ...who(), previousId: deviceId }],
  ['track', { ...who(), event: 'Application Backgrounded' }],
  ['track', { ...who(), event: 'Application Opened', properties: { from_background: true } }],
]

let pending = 0
let delivered = 0
for (const [method, params] of calls) {
  pending++
  try {
    analytics[method](params, (err) => {
      pending--
      if (err) errors.push(`${method}: ${err.message ?? err}`)
      else delivered++
    })
  } catch (err) { // validation errors are thrown synchronously
    pending--
    errors.push(`${method}: ${err.message ?? err}`)
  }
}

await analytics.flush()
// The callbacks run on the next turn after each batch's answer.
await new Promise((resolve) => setImmediate(resolve))
if (pending > 0) errors.push(`${pending} call(s) not delivered`)

const summary = { ok: errors.length === 0, sent: delivered, errors: [...new Set(errors)] }
console.log(JSON.stringify(summary))
process.exit(summary.ok ? 0 : 1)
