// Sends a fixed sequence of Segment calls to an OpenEngage collector using
// Segment's official Node SDK (@segment/analytics-node), then prints a one-line
// JSON summary to stdout. Exit code 0 only if every call was delivered (2xx/3xx).
//
// Env:
//   ENGAGE_HOST        base URL, e.g. http://127.0.0.1:8080 (required)
//   ENGAGE_WRITE_KEY   write key, sent as HTTP Basic user (required)
//   ENGAGE_DEVICE_ID   device id / anonymousId (required)
//   ENGAGE_USER_ID     userId for identified calls (required)
//   ENGAGE_PATH        batch path (default /v1/batch)
//   ENGAGE_MAX_RETRIES retries per batch on 5xx/429/network errors (default 2)
//   ENGAGE_TIMEOUT_MS  closeAndFlush timeout (default 20000)
//   ENGAGE_IP, ENGAGE_PUSH_TOKEN  override context.ip / context.device.token
//
// Sequence (11 calls, one batch), a first launch, a trip to the background and
// an update as Segment's iOS SDK reports them with the lifecycle events of
// Segment's Native Mobile Spec:
//   track "Application Installed", track "Application Opened" (anonymousId
//   only), identify, screen "login", track "article_read", track "logged_in",
//   page "home", track "app_opened" (anonymousId only; not the spec's name),
//   track "Application Backgrounded", track "Application Updated" and
//   track "Application Opened" (both from app version 2.4.0, build 240).
import { Analytics } from '@segment/analytics-node'

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

const analytics = new Analytics({
  writeKey,
  host,
  path: env('ENGAGE_PATH', '/v1/batch'),
  flushAt: 50, // > number of calls: everything goes in one batch at closeAndFlush
  flushInterval: 10000,
  maxRetries: Number(env('ENGAGE_MAX_RETRIES', '2')),
  httpRequestTimeout: 10000,
})

// Fresh object per call: the SDK mutates event.context in place (adds context.library).
const context = (version = '2.3.1', build = '231') => ({
  device: {
    id: deviceId,
    model: 'iPhone15,2',
    type: 'ios',
    token: env('ENGAGE_PUSH_TOKEN', 'a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90'),
  },
  os: { name: 'iOS', version: '17.2' },
  app: { version, build },
  locale: 'fr-FR',
  timezone: 'Europe/Paris',
  ip: env('ENGAGE_IP', '203.0.113.7'),
})
const who = () => ({ userId, anonymousId: deviceId, context: context() })
const v2 = () => ({ userId, anonymousId: deviceId, context: context('2.4.0', '240') })

const calls = [
  ['track', { anonymousId: deviceId, context: context(), event: 'Application Installed', properties: { version: '2.3.1', build: '231' } }],
  ['track', { anonymousId: deviceId, context: context(), event: 'Application Opened', properties: { from_background: false, version: '2.3.1', build: '231' } }],
  ['identify', { ...who(), traits: { logged_in: true, plan: 'premium', age: 31, subscription_expiry: '2027-01-31T00:00:00Z' } }],
  ['screen', { ...who(), name: 'login', properties: { section: 'auth' } }],
  ['track', { ...who(), event: 'article_read', properties: { category: 'sport', words: 640, premium: false } }],
  ['track', { ...who(), event: 'logged_in', properties: {} }],
  ['page', { ...who(), name: 'home', properties: { path: '/home' } }],
  ['track', { anonymousId: deviceId, context: context(), event: 'app_opened', properties: { from_background: true } }],
  ['track', { ...who(), event: 'Application Backgrounded' }],
  ['track', { ...v2(), event: 'Application Updated', properties: { previous_version: '2.3.1', previous_build: '231', version: '2.4.0', build: '240' } }],
  ['track', { ...v2(), event: 'Application Opened', properties: { from_background: false, version: '2.4.0', build: '240' } }],
]

const messageIds = []
const errors = []
const statuses = []
let pending = 0
let failed = 0
analytics.on('http_response', (r) => statuses.push(r.status))
analytics.on('error', (e) => errors.push(`${e.code}: ${e.reason?.message ?? e.reason}`))

for (const [i, [method, params]] of calls.entries()) {
  pending++
  try {
    analytics[method](params, (err, ctx) => {
      pending--
      if (err) failed++, errors.push(`${method}: ${err.message ?? err}`)
      else messageIds[i] = ctx.event.messageId // in call order, whatever the callback order
    })
  } catch (err) { // validation errors are thrown synchronously
    pending--, failed++
    errors.push(`${method}: ${err.message ?? err}`)
  }
}

await analytics.closeAndFlush({ timeout: Number(env('ENGAGE_TIMEOUT_MS', '20000')) })
if (pending > 0) failed += pending, errors.push(`${pending} call(s) not delivered before timeout`)

const summary = { ok: errors.length === 0, sent: messageIds.filter(Boolean).length, failed, messageIds, statuses, errors: [...new Set(errors)] }
console.log(JSON.stringify(summary))
process.exit(summary.ok ? 0 : 1)
