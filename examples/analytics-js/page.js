// Runs analytics.js in a page against an OpenEngage collector on another
// origin, then posts a JSON report to /report on the page's own origin.
//
// Query parameters: collector (the collector's base URL, e.g.
// http://127.0.0.1:8080), writeKey.
//
// What it does, as a web app would:
//   1. AnalyticsBrowser.load({writeKey, cdnURL: collector}): analytics.js
//      fetches GET {collector}/v1/projects/{writeKey}/settings, whose
//      Segment.io apiHost and protocol point it at the collector.
//   2. page('Docs', 'Getting started', {section: 'intro'}),
//      track('article_read', {category: 'sport', words: 640, premium: false}),
//      identify('user-42', {plan: 'premium', logged_in: true}): posted by
//      analytics.js to /v1/p, /v1/t and /v1/i with an Authorization header,
//      so each after a CORS preflight.
//   3. The page's own calls: POST /v1/tags (application/json, X-Write-Key)
//      with an event of the same device, and GET /v1/inapp?device=… with a
//      Bearer key; both preflighted.
//
// Every fetch of the page (analytics.js's included) is logged with its
// status, or its error: a browser refusing an answer for CORS makes fetch
// fail with a TypeError. The report: {ok, anonymousId, fetches, native,
// inapp, errors}; ok is true when every call got a 2xx its page could read.
(function () {
  'use strict'
  var q = new URLSearchParams(location.search)
  var collector = q.get('collector')
  var writeKey = q.get('writeKey')
  var report = { ok: false, anonymousId: null, fetches: [], native: null, inapp: null, errors: [] }
  var sent = false

  function send() {
    if (sent) return
    sent = true
    document.getElementById('status').textContent = report.ok ? 'ok' : 'failed'
    var realFetch = window.__realFetch || window.fetch
    realFetch('/report', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(report) })
  }
  function fail(what, err) {
    report.errors.push(what + ': ' + (err && err.message ? err.message : String(err)))
    send()
  }
  window.addEventListener('error', function (e) { report.errors.push('page error: ' + e.message) })
  window.addEventListener('unhandledrejection', function (e) {
    report.errors.push('unhandled rejection: ' + (e.reason && e.reason.message ? e.reason.message : String(e.reason)))
  })

  // Log every fetch (analytics.js calls window.fetch at each request). A
  // call to the collector that fails ends the run at once: analytics.js
  // would retry it with backoff for minutes.
  var realFetch = window.fetch.bind(window)
  window.__realFetch = realFetch
  window.fetch = function (input, init) {
    var url = typeof input === 'string' ? input : input.url
    var method = (init && init.method) || 'GET'
    var entry = { method: method.toUpperCase(), url: url }
    report.fetches.push(entry)
    return realFetch(input, init).then(function (res) {
      entry.status = res.status
      return res
    }, function (err) {
      entry.error = String(err)
      if (url.indexOf(collector) === 0) fail(entry.method + ' ' + url, err)
      throw err
    })
  }

  // Resolves when analytics.js's own request to path has been answered.
  function answered(path, timeoutMs) {
    var deadline = Date.now() + timeoutMs
    return new Promise(function (resolve, reject) {
      (function poll() {
        for (var i = 0; i < report.fetches.length; i++) {
          var f = report.fetches[i]
          if (f.url === collector + path && f.status !== undefined) return resolve(f)
        }
        if (Date.now() > deadline) return reject(new Error('no answer to ' + path + ' within ' + timeoutMs + ' ms'))
        setTimeout(poll, 50)
      })()
    })
  }

  async function main() {
    if (!collector || !writeKey) throw new Error('collector and writeKey query parameters are required')
    var loaded = await AnalyticsNext.AnalyticsBrowser.load({ writeKey: writeKey, cdnURL: collector })
    var analytics = loaded[0]
    report.anonymousId = analytics.user().anonymousId()
    await analytics.page('Docs', 'Getting started', { section: 'intro' })
    await analytics.track('article_read', { category: 'sport', words: 640, premium: false })
    await analytics.identify('user-42', { plan: 'premium', logged_in: true })
    await answered('/v1/p', 15000)
    await answered('/v1/t', 15000)
    await answered('/v1/i', 15000)

    var res = await fetch(collector + '/v1/tags', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Write-Key': writeKey },
      body: JSON.stringify([{ type: 'event', deviceId: report.anonymousId, userId: 'user-42', name: 'native_call', extras: { from: 'browser' } }])
    })
    report.native = { status: res.status, body: await res.json() }

    res = await fetch(collector + '/v1/inapp?device=' + encodeURIComponent(report.anonymousId), {
      headers: { Authorization: 'Bearer ' + writeKey }
    })
    report.inapp = { status: res.status, body: await res.json() }

    report.ok = report.fetches.every(function (f) {
      return f.url.indexOf(collector) !== 0 || (f.status >= 200 && f.status < 300)
    }) && report.errors.length === 0
    send()
  }
  main().catch(function (err) { fail('run', err) })
})()
