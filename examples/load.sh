#!/bin/sh
# Loads example use cases into OpenEngage: for each folder, its segments
# (engage segments put), then its campaigns (engage campaigns put), then
# its caps (engage campaigns caps, from caps.txt when there is one).
#
#   examples/load.sh [-n] DIR...
#
# DIR is an example folder: a path, or a folder name under examples/;
# "all" is every folder of examples/ that has an app file. A folder holds:
#
#   app                 one line: the app id (news, game, shop, bank)
#   segments/NAME.seg   one segment each, in the segment language; NAME is its name
#   campaigns/*.yaml    campaign files (docs/campaigns.md)
#   caps.txt            optional: lines "CHANNEL PER_DAY PER_WEEK" (the app's caps)
#
# -n only checks, offline (no broker needed): engage segments check and
# engage campaigns check (which cannot look the segment names up then).
#
# Environment:
#   ENGAGE                the engage binary (default: engage, on the PATH)
#   ENGAGE_KAFKA_BROKERS  the brokers (required without -n); every other
#                         ENGAGE_* variable reaches engage as usual
#   EXAMPLES_ONCE_AT      a wall time such as 2026-12-02T19:00: replaces the
#                         instant of the one-off campaign (news-alerts), whose
#                         date in the file is years ahead
#
# The first failure stops the script with a non-zero status, the failing
# file named (segment mistakes as FILE:LINE:COLUMN: message).

set -u

usage() {
	echo "usage: load.sh [-n] DIR... (an example folder, or all)" >&2
	exit 2
}

fail() {
	echo "load.sh: $*" >&2
	exit 1
}

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || exit 2
apps=$here/apps.yaml
engage=${ENGAGE:-engage}
check=false
while getopts n opt; do
	case $opt in
	n) check=true ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage

if ! $check && [ -z "${ENGAGE_KAFKA_BROKERS:-}" ]; then
	fail "set ENGAGE_KAFKA_BROKERS (or give -n to check only)"
fi
[ -f "$apps" ] || fail "no apps file at $apps"

if [ -n "${EXAMPLES_ONCE_AT:-}" ]; then
	case $EXAMPLES_ONCE_AT in
	*[!0-9T:-]*) fail "EXAMPLES_ONCE_AT=$EXAMPLES_ONCE_AT: give a wall time such as 2026-12-02T19:00" ;;
	esac
fi

tmp=
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# run FILE ARGS...: runs engage ARGS about FILE and prints what it says;
# on failure, prints its mistakes with FILE in front of each LINE:COLUMN
# that does not name a file yet, and stops.
run() {
	file=$1
	shift
	if out=$("$engage" "$@" 2>&1 </dev/null); then
		[ -z "$out" ] || printf '%s: %s\n' "$file" "$out"
		return 0
	fi
	printf '%s\n' "$out" | F=$file awk '{
		sub(/^engage [a-z-]+: /, "")
		if ($0 ~ /^[0-9]+:[0-9]+: /) print ENVIRON["F"] ":" $0
		else print
	}' >&2
	fail "failed: $file"
}

# folders ARGS...: the folders to load, one a line.
folders() {
	for a in "$@"; do
		if [ "$a" = all ]; then
			for d in "$here"/*/; do
				[ -f "$d/app" ] && printf '%s\n' "${d%/}"
			done
		elif [ -d "$a" ]; then
			printf '%s\n' "${a%/}"
		elif [ -d "$here/$a" ]; then
			printf '%s\n' "$here/${a%/}"
		else
			echo "load.sh: no example folder $a" >&2
			printf '%s\n' "-"
		fi
	done
}

load() {
	dir=$1
	[ -f "$dir/app" ] || fail "$dir: no app file (one line: the app id)"
	app=$(head -n 1 "$dir/app" | tr -d ' \t\r')
	[ -n "$app" ] || fail "$dir/app: empty (one line: the app id)"
	set -- "$dir"/segments/*.seg
	[ -e "$1" ] || fail "$dir: no segments/*.seg"
	set -- "$dir"/campaigns/*.yaml
	[ -e "$1" ] || fail "$dir: no campaigns/*.yaml"
	echo "== $dir (app $app)"

	# Segments first: storing a campaign checks its segments' names.
	for f in "$dir"/segments/*.seg; do
		name=$(basename "$f" .seg)
		if $check; then
			run "$f" segments check -apps "$apps" -app "$app" -name "$name" -file "$f"
		else
			run "$f" segments put -apps "$apps" -app "$app" -name "$name" -file "$f"
		fi
	done

	for f in "$dir"/campaigns/*.yaml; do
		capp=$(sed -n 's/^app:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$f" | head -n 1)
		[ "$capp" = "$app" ] || fail "$f: app \"$capp\" is not the folder's app \"$app\" ($dir/app)"
		src=$f
		if [ -n "${EXAMPLES_ONCE_AT:-}" ] && grep -q 'EXAMPLES_ONCE_AT' "$f"; then
			[ -n "$tmp" ] || tmp=$(mktemp -d) || fail "mktemp failed"
			src=$tmp/$(basename "$f")
			sed "/EXAMPLES_ONCE_AT/s/^\([[:space:]]*at:[[:space:]]*\)[0-9T:-]*/\1$EXAMPLES_ONCE_AT/" "$f" >"$src" ||
				fail "$f: could not set EXAMPLES_ONCE_AT"
			echo "$f: once at $EXAMPLES_ONCE_AT (EXAMPLES_ONCE_AT), as $src"
		fi
		if $check; then
			run "$f" campaigns check -apps "$apps" -kafka.brokers= "$src"
		else
			run "$f" campaigns put -apps "$apps" "$src"
		fi
	done

	if [ -f "$dir/caps.txt" ]; then
		n=0
		while read -r channel day week rest || [ -n "${channel:-}" ]; do
			n=$((n + 1))
			case ${channel:-} in '' | '#'*) continue ;; esac
			case $channel in push | data | in_app) ;; *)
				fail "$dir/caps.txt:$n: channel \"$channel\": give push, data or in_app" ;;
			esac
			case ${day:-x}${week:-x} in *[!0-9]*)
				fail "$dir/caps.txt:$n: give CHANNEL PER_DAY PER_WEEK, whole numbers" ;;
			esac
			[ -z "${rest:-}" ] || fail "$dir/caps.txt:$n: give CHANNEL PER_DAY PER_WEEK, nothing more"
			if $check; then
				echo "$dir/caps.txt:$n: caps of app $app: $channel $day per day, $week per week (not stored with -n)"
			else
				run "$dir/caps.txt" campaigns caps -app "$app" -channel "$channel" -per-day "$day" -per-week "$week"
			fi
		done <"$dir/caps.txt"
	fi
}

list=$(folders "$@")
[ -n "$list" ] || fail "no example folder in: $*"
! printf '%s\n' "$list" | grep -qx -- - || exit 1
# One folder a line; example folders have no line breaks in their names.
old_ifs=$IFS
IFS='
'
for d in $list; do
	IFS=$old_ifs
	load "$d"
done
IFS=$old_ifs
echo "ok"
