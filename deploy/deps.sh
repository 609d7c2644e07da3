#!/usr/bin/env bash
# Installs what building and testing OpenEngage needs, when it is missing:
# Go modules, Java and Maven (for the Kafka broker; the broker jars come from
# Maven Central through deploy/services/services.sh), Node.js and npm (for the
# SDK compatibility tests), and the SDKs themselves from npm, at the versions
# pinned in each harness's package-lock.json. Reuses everything already
# present; prints nothing when all is there.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need_apt=()
command -v go   >/dev/null || { echo "deps: Go 1.26 or later is required (https://go.dev/dl); it is not installed" >&2; exit 1; }
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn  >/dev/null || need_apt+=(maven)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm  >/dev/null || need_apt+=(npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "deps: installing ${need_apt[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need_apt[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need_apt[@]}" >&2; }
fi

cd "$repo"
# Go modules (a no-op when the module cache has them).
go mod download
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
