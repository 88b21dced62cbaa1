#!/bin/bash
# scripts/livekit.sh - installs the real livekit-server, pinned, built from source with Go.
#
#   scripts/livekit.sh            build (or reuse the cache), check --version, print the path
#   scripts/livekit.sh --path     print where the binary is (or would be); build nothing
#   scripts/livekit.sh --install  also copy it to /usr/local/bin/livekit-server (root)
#
# The pin lives here and only here: LIVEKIT_VERSION. v1.13.5 is the newest tag that
# `go install pkg@version` accepts (CONTRACT.md §16: 1.13.0-1.13.1 and master carry `replace`
# directives). Before moving it, `go mod download -json github.com/livekit/livekit-server@vX`
# and check that its go.mod has no `replace`.
#
# Cache: $AIRCLASS_CACHE (default /var/tmp/airclass-cache)/livekit/<version>/livekit-server.
# The Go module and build caches (go env GOMODCACHE GOCACHE) make a rebuild after a cache wipe
# fast too. A cold build on a 2-core machine takes several minutes; a cached run, a second.
set -Eeuo pipefail
LIVEKIT_VERSION=v1.13.5
CACHE=${AIRCLASS_CACHE:-/var/tmp/airclass-cache}
DIR=$CACHE/livekit/$LIVEKIT_VERSION
BIN=$DIR/livekit-server

say() { printf '[livekit] %s\n' "$*" >&2; }

if [[ ${1:-} == --path ]]; then echo "$BIN"; exit 0; fi
if [[ ${1:-} == --version ]]; then echo "${LIVEKIT_VERSION#v}"; exit 0; fi

check() {  # the binary runs and says the pinned version
  local out
  out=$("$1" --version 2>&1) || return 1
  [[ $out == *"${LIVEKIT_VERSION#v}"* ]]
}

if [[ -x $BIN ]] && check "$BIN"; then
  say "cached: $BIN ($("$BIN" --version 2>&1 | head -1))"
else
  command -v go >/dev/null || {
    say "ERROR: Go >= 1.26 is needed to build livekit-server $LIVEKIT_VERSION (its go.mod says go 1.26;"
    say "Debian 12's golang-go is 1.19, too old: use go.dev/dl), or put a livekit-server"
    say "$LIVEKIT_VERSION binary at $BIN (or point AIRCLASS_LIVEKIT at one for the tests)"
    exit 1
  }
  mkdir -p "$DIR"
  tmp=$(mktemp -d "$DIR/build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  say "building livekit-server $LIVEKIT_VERSION with $(go version | cut -d' ' -f3) (first time: several minutes on 2 cores)..."
  t0=$SECONDS
  ( while sleep 30; do say "... still building ($((SECONDS - t0)) s)"; done ) &
  ticker=$!
  rc=0
  GOBIN=$tmp GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION" || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  [[ $rc == 0 ]] || { say "ERROR: go install failed (rc=$rc); is the Go module proxy reachable (go env GOPROXY)?"; exit 1; }
  mv "$tmp/server" "$BIN.new"
  check "$BIN.new" || { say "ERROR: $BIN.new --version does not say ${LIVEKIT_VERSION#v}"; exit 1; }
  mv "$BIN.new" "$BIN"
  say "built in $((SECONDS - t0)) s: $BIN"
fi

if [[ ${1:-} == --install ]]; then
  install -m 755 "$BIN" /usr/local/bin/livekit-server
  say "installed /usr/local/bin/livekit-server"
fi
echo "$BIN"
