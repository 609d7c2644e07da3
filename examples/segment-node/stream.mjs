// Sends a stream of track calls to an OpenEngage collector using Segment's
// official Node SDK (@segment/analytics-node), with event times far from now:
// most devices' events lie weeks in the past (an offline queue flushed late,
// an import), a few devices' clocks are hours ahead. Prints a one-line JSON
// summary; exit code 0 only if every call was delivered.
//
// Env:
//   ENGAGE_HOST             base URL, e.g. http://127.0.0.1:8080 (required)
//   ENGAGE_WRITE_KEY        write key (required)
//   ENGAGE_PREFIX           prefix of device and message ids (default "node")
//   ENGAGE_DEVICES          devices (default 100)
//   ENGAGE_EVENTS           track calls per device (default 100)
//   ENGAGE_FUTURE_DEVICES   how many of the devices have clocks ahead (default 5)
//   ENGAGE_MAX_RETRIES      retries per batch (default 0: a failure is reported, not retried)
//
// Device d is "<prefix>-d<d>"; its i-th call has messageId
// "<prefix>-d<d>-<i>" and timestamp: for d < devices - future, (14 + d % 43)
// days ago plus i seconds; for the others, (2 + d % 20) hours ahead plus i
// seconds (the collector accepts up to 24 h).
import { Analytics } from '@segment/analytics-node'

const env = (k, d) => {
  const v = process.env[k] ?? d
  if (v === undefined || v === '') {
    console.error(`missing env ${k}`)
    process.exit(2)
  }
  return v
}
const prefix = env('ENGAGE_PREFIX', 'node')
const devices = Number(env('ENGAGE_DEVICES', '100'))
const events = Number(env('ENGAGE_EVENTS', '100'))
const future = Number(env('ENGAGE_FUTURE_DEVICES', '5'))

const analytics = new Analytics({
  writeKey: env('ENGAGE_WRITE_KEY'),
  host: env('ENGAGE_HOST'),
  path: '/v1/batch',
  flushAt: 100,
  flushInterval: 200,
  maxRetries: Number(env('ENGAGE_MAX_RETRIES', '0')),
  httpRequestTimeout: 30000,
})

const statuses = {}
const errors = new Set()
const failedIds = []
let sent = 0
let pending = 0
analytics.on('http_response', (r) => { statuses[r.status] = (statuses[r.status] ?? 0) + 1 })

const now = Date.now()
const day = 24 * 3600 * 1000
const hour = 3600 * 1000
for (let d = 0; d < devices; d++) {
  const base = d < devices - future ? now - (14 + (d % 43)) * day : now + (2 + (d % 20)) * hour
  const deviceId = `${prefix}-d${d}`
  for (let i = 0; i < events; i++) {
    const messageId = `${deviceId}-${i}`
    pending++
    analytics.track({
      anonymousId: deviceId,
      messageId,
      timestamp: new Date(base + i * 1000),
      event: 'article_read',
      properties: { category: ['sport', 'politics', 'culture'][i % 3], words: 100 + i },
    }, (err) => {
      pending--
      if (err) failedIds.push(messageId), errors.add(String(err.message ?? err))
      else sent++
    })
  }
  // Let the SDK send what it has queued now and then, as an app would.
  if (d % 10 === 9) await new Promise((r) => setImmediate(r))
}

await analytics.closeAndFlush({ timeout: 120000 })
if (pending > 0) errors.add(`${pending} call(s) not delivered before the timeout`)
const summary = { ok: errors.size === 0 && failedIds.length === 0, sent, failed: failedIds.length + pending, statuses, failedIds: failedIds.slice(0, 20), errors: [...errors] }
console.log(JSON.stringify(summary))
process.exit(summary.ok ? 0 : 1)
