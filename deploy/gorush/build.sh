#!/usr/bin/env bash
# Builds gorush v1.22 (github.com/appleboy/gorush) from its public source, for the
# delivery benchmark that runs it beside `engage deliver` (see README.md here).
# None of gorush's code is kept in this repository: the source comes from a bare
# git mirror of gorush's repository, is exported into the cache and is built
# there, its dependencies coming from the Go module proxy.
#
# Usage: deploy/gorush/build.sh [MIRROR_GIT_DIR]
#   MIRROR_GIT_DIR   a bare clone (or any git dir) of github.com/appleboy/gorush;
#                    by default the first of $GORUSH_MIRROR, /work/.mirror/appleboy+gorush/repo
#                    and /work/.mirror/*gorush*/repo that exists
# Environment:
#   GORUSH_REF        tag or commit to build    (default: the newest v1.22.x tag,
#                                                else the v1.22.0 release commit)
#   ENGAGE_CACHE_DIR  where the source and binary go
#                     (default: ${XDG_CACHE_HOME:-~/.cache}/openengage)
#   GORUSH_REBUILD=1  build even when the binary is there
#
# Prints the binary's path as the last line of standard output (progress goes to
# standard error). Reuses the binary when it is present and reports the wanted
# version; with no mirror at all, a present binary is reused as it is.
set -euo pipefail

# The v1.22.0 release: a lightweight tag on this commit in gorush's repository.
RELEASE_COMMIT=db13af35ffde7860e532af8f6c98fab6689043c1

CACHE=$(realpath -m "${ENGAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/openengage}")
BIN="$CACHE/bin/gorush-1.22"
say() { echo "gorush: $*" >&2; }

mirror="${1:-${GORUSH_MIRROR:-}}"
if [ -z "$mirror" ]; then
  for d in /work/.mirror/appleboy+gorush/repo /work/.mirror/*gorush*/repo; do
    if [ -d "$d" ] && git --git-dir="$d" rev-parse --git-dir >/dev/null 2>&1; then mirror=$d; break; fi
  done
fi

if [ -z "$mirror" ]; then
  if [ -x "$BIN" ] && [ -z "${GORUSH_REBUILD:-}" ]; then
    say "no mirror found; reusing $BIN ($("$BIN" -V 2>&1 | head -1))"
    echo "$BIN"
    exit 0
  fi
  say "no mirror of github.com/appleboy/gorush: pass its git dir as the argument"
  say "(deploy/gorush/README.md says how a fresh machine gets one)"
  exit 1
fi
git --git-dir="$mirror" rev-parse --git-dir >/dev/null 2>&1 || { say "$mirror is not a git dir"; exit 1; }
g() { git --git-dir="$mirror" "$@"; }

# Which tree: the asked ref, else the newest v1.22.x tag, else the release commit.
ref="${GORUSH_REF:-$(g tag -l 'v1.22.*' | sort -V | tail -n1)}"
if [ -z "$ref" ]; then
  g cat-file -e "$RELEASE_COMMIT^{commit}" 2>/dev/null || { say "the mirror has no v1.22.x tag and no commit $RELEASE_COMMIT"; exit 1; }
  ref=$RELEASE_COMMIT
  say "no v1.22.x tag in the mirror; using the v1.22.0 release commit"
fi
commit=$(g rev-parse --verify "$ref^{commit}") || { say "no such ref in the mirror: $ref"; exit 1; }
case "$ref" in
  v*) version=$ref ;;
  *)  version=$(g describe --tags --exact-match "$commit" 2>/dev/null || echo "v1.22.0-${commit:0:7}") ;;
esac
[ "$ref" = "v1.22.0" ] && [ "$commit" != "$RELEASE_COMMIT" ] && say "warning: v1.22.0 is $commit here, not $RELEASE_COMMIT"
short=${commit:0:7}

# Reuse when the binary reports this version and commit.
if [ -x "$BIN" ] && [ -z "${GORUSH_REBUILD:-}" ]; then
  have=$("$BIN" -V 2>&1 | head -1 || true)
  if [[ "$have" == "GoRush $version, Commit: $short,"* ]]; then
    say "reusing $BIN ($have)"
    echo "$BIN"
    exit 0
  fi
  say "rebuilding: $BIN reports '$have', wanted $version $short"
fi

# Export the tree (once per commit; atomically, so an interrupted export is redone).
src="$CACHE/gorush-src/$version-$short"
if [ ! -f "$src/go.mod" ]; then
  say "exporting $version ($commit) from $mirror to $src"
  mkdir -p "$CACHE/gorush-src"
  tmp=$(mktemp -d "$CACHE/gorush-src/.export.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  g archive "$commit" | tar -x -C "$tmp"
  rm -rf "$src"
  mv "$tmp" "$src"
  trap - EXIT
fi

# The Go it asks for (its go.mod's go line) against the one installed; never let
# the go command fetch another toolchain behind our back.
need=$(awk '$1 == "go" { print $2; exit }' "$src/go.mod")
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  say "gorush $version needs Go $need; this machine has Go $have"
  exit 1
fi

# As gorush's Makefile builds it (-s -w, version and commit stamped in), with
# -trimpath; dependencies from the Go module proxy, checked against go.sum.
say "building $version ($short) with Go $have (go.mod asks for $need or later)"
mkdir -p "$CACHE/bin"
start=$(date +%s)
(cd "$src" && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath \
  -ldflags "-s -w -X main.version=$version -X main.commit=$short" \
  -o "$BIN.tmp" .)
mv "$BIN.tmp" "$BIN"
say "built in $(( $(date +%s) - start ))s: $("$BIN" -V 2>&1 | head -1)"
echo "$BIN"
