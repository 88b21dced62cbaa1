#!/bin/bash
# scripts/check.sh - the fast inner loop: needs no root, no apt, no containers.
#
#   cargo fmt --check, cargo clippy --all-targets -D warnings, function lengths in src/
#   (scripts/fn-lengths.py --check: none over 80 lines without a `// long:` reason), then
#   cargo nextest on the pure and in-process tiers (profile `quick` in .config/nextest.toml):
#   unit and property tests (paused-time tests included), the cluster roles in-process, the
#   daemon in-process (`daemon::run`) with the real livekit-server, links cut between nodes.
#
# Needs cargo-nextest, redis-server and the real livekit-server (`scripts/test.sh` installs all
# three; or `cargo install cargo-nextest --locked`, `apt-get install -y redis-server` and
# `scripts/livekit.sh` once: it builds the pinned server with Go and caches it).
# Extra arguments go to nextest, e.g. `scripts/check.sh -E 'test(/partition/)'`.
# The full run (root, every tier, packaging, containers) is scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest is missing: cargo install cargo-nextest --locked" >&2
  exit 1
fi
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
step "real livekit-server (scripts/livekit.sh: cached after the first build)"
scripts/livekit.sh >/dev/null
step fmt
cargo fmt --check
step clippy
cargo clippy --locked --all-targets -- -D warnings
step "function lengths (src/)"
python3 scripts/fn-lengths.py --check --top 5 src
step "tests: pure and in-process tiers"
cargo nextest run --locked --profile quick "$@"
