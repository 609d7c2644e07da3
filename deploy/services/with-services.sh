#!/usr/bin/env bash
# Runs a command with the real Kafka and ClickHouse up, their addresses in
# ENGAGE_* variables and ENGAGE_REQUIRE_SERVICES=1 (integration tests fail
# instead of skipping). Services this script started are stopped again when
# the command ends; services that were already running are left running.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
services="$here/services.sh"

was_up=0
"$services" ready >/dev/null 2>&1 && was_up=1
if [ "$was_up" = 0 ]; then
  trap '"$services" down >&2 || true' EXIT
fi
"$services" up >&2
eval "$("$services" env)"
export ENGAGE_REQUIRE_SERVICES=1
export ENGAGE_SERVICES_SCRIPT="$services"
"$@"
