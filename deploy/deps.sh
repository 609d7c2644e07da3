#!/usr/bin/env bash
# Installs what OpenEngage needs, when it is missing, and reuses what is
# present (printing nothing then).
#
#   deploy/deps.sh go    Go and the Go modules: what building the binary and
#                        `make demo` need (make build, make demo).
#   deploy/deps.sh       all of it (make test, make bench, make services): the
#                        Go modules; Java and Maven (for the Kafka broker; its
#                        jars come from Maven Central through
#                        deploy/services/services.sh); Node.js and npm (for the
#                        SDK compatibility tests) and those SDKs from npm, at
#                        the versions pinned in each harness's package-lock.json;
#                        Chromium (for the browser test: Segment's analytics.js
#                        in headless Chromium against the collector).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
what="${1:-all}"
case "$what" in
  go|all) ;;
  *) echo "usage: deploy/deps.sh [go|all]" >&2; exit 2 ;;
esac

command -v go >/dev/null || { echo "deps: Go 1.26 or later is required (https://go.dev/dl); it is not installed" >&2; exit 1; }
cd "$repo"

# Go modules: downloaded once into the module cache (GOMODCACHE), then
# reused; the check that they are all there stays offline.
if ! GOPROXY=off go mod download >/dev/null 2>&1; then
  echo "deps: downloading Go modules (first run only)…" >&2
  go mod download
fi
[ "$what" = go ] && exit 0

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn  >/dev/null || need_apt+=(maven)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm  >/dev/null || need_apt+=(npm)
# Any Chromium the browser test finds on the PATH will do.
command -v chromium >/dev/null || command -v chromium-headless-shell >/dev/null || command -v chromium-browser >/dev/null ||
  command -v google-chrome >/dev/null || need_apt+=(chromium)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "deps: installing ${need_apt[*]} with apt-get (for the tests' Kafka broker, SDK and browser checks)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need_apt[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need_apt[@]}" >&2; }
fi

# The Segment Node SDK used by the compatibility test.
sdk="$repo/examples/segment-node"
if [ ! -d "$sdk/node_modules/@segment/analytics-node" ]; then
  echo "deps: installing @segment/analytics-node from npm" >&2
  (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
# The RudderStack Node SDK used by the compatibility test (without its
# optional Redis queue, which the test does not use).
sdk="$repo/examples/rudderstack-node"
if [ ! -d "$sdk/node_modules/@rudderstack/rudder-sdk-node" ]; then
  echo "deps: installing @rudderstack/rudder-sdk-node from npm" >&2
  (cd "$sdk" && npm ci --omit=optional --no-audit --no-fund --loglevel=error >&2)
fi
# Segment's browser SDK (analytics.js 2.0) that the browser test serves to
# headless Chromium.
sdk="$repo/examples/analytics-js"
if [ ! -d "$sdk/node_modules/@segment/analytics-next" ]; then
  echo "deps: installing @segment/analytics-next from npm" >&2
  (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
