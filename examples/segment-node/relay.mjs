// Relays calls to an OpenEngage collector through Segment's official Node
// SDK (@segment/analytics-node), as a long-running process that a test
// drives over standard input, one JSON command per line:
//
//   {"op": "track" | "screen" | "identify", "writeKey": "...", "msg": {...}}
//       the SDK call of that name with msg as its argument (a "timestamp"
//       string becomes a Date); one SDK instance per write key
//   {"op": "flush"}
//       sends everything queued (in one batch of the SDK when there are at
//       most 1000 calls: nothing is sent before, so that no two batches
//       race and the calls reach the collector in their order), waits for
//       every call's callback, and
//       prints one JSON line: {"ok", "sent", "failed", "statuses", "errors"}
//       for the calls since the previous flush
//
// Env: ENGAGE_HOST, the collector's base URL (required).
import { Analytics } from '@segment/analytics-node'
import { createInterface } from 'node:readline'

const host = process.env.ENGAGE_HOST
if (!host) {
  console.error('missing env ENGAGE_HOST')
  process.exit(2)
}
const clients = new Map()
let statuses = {}
const client = (writeKey) => {
  let a = clients.get(writeKey)
  if (!a) {
    a = new Analytics({ writeKey, host, path: '/v1/batch', flushAt: 1000, flushInterval: 600000, maxRetries: 3, httpRequestTimeout: 30000 })
    a.on('http_response', (r) => { statuses[r.status] = (statuses[r.status] ?? 0) + 1 })
    clients.set(writeKey, a)
  }
  return a
}

let pending = []
let sent = 0
let failed = 0
let errors = new Set()
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (line.trim() === '') continue
  const cmd = JSON.parse(line)
  if (cmd.op === 'flush') {
    await Promise.all([...clients.values()].map((a) => a.flush({ timeout: 60000 })))
    await Promise.all(pending)
    console.log(JSON.stringify({ ok: failed === 0 && errors.size === 0, sent, failed, statuses, errors: [...errors] }))
    pending = []
    sent = 0
    failed = 0
    errors = new Set()
    statuses = {}
    continue
  }
  const msg = cmd.msg
  if (typeof msg.timestamp === 'string') msg.timestamp = new Date(msg.timestamp)
  const a = client(cmd.writeKey)
  pending.push(new Promise((resolve) => {
    a[cmd.op](msg, (err) => {
      if (err) failed++, errors.add(String(err.message ?? err))
      else sent++
      resolve()
    })
  }))
}
await Promise.all([...clients.values()].map((a) => a.closeAndFlush({ timeout: 60000 })))
