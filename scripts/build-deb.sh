#!/bin/bash
# scripts/build-deb.sh - build the airclass-node .deb: release binary, man page generated from the
# CLI (`airclass-node man`, roff on stdout), then cargo-deb (>= 3.8) packaging what was built.
# Prints the path of the .deb on the last line of stdout. Optional: LINTIAN=1 runs lintian on it
# and fails on any error or warning.
#   scripts/build-deb.sh              # -> target/debian/airclass-node_<version>-1_<arch>.deb
#   LINTIAN=1 scripts/build-deb.sh
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [[ $CARGO_TARGET_DIR != "$PWD/target" ]]; then
  # cargo-deb's assets name target/release/... and target/man/...; keep them in this tree.
  echo "build-deb.sh: CARGO_TARGET_DIR must be $PWD/target (is $CARGO_TARGET_DIR)" >&2
  exit 1
fi

need() { command -v "$1" >/dev/null || { echo "build-deb.sh: missing $1 ($2)" >&2; exit 1; }; }
need cargo "rustup"
need gzip "apt-get install gzip"
need dpkg-deb "apt-get install dpkg"
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: cargo-deb missing: cargo install cargo-deb --version ^3.8 --locked" >&2
  exit 1
fi
v=$(cargo deb --version | grep -oE '[0-9]+\.[0-9]+' | head -1)
if [[ ${v%%.*} -lt 3 || ( ${v%%.*} == 3 && ${v#*.} -lt 8 ) ]]; then
  echo "build-deb.sh: cargo-deb $v is older than 3.8 (sysusers support): cargo install cargo-deb --version ^3.8 --locked" >&2
  exit 1
fi

echo "build-deb.sh: cargo build --release --bin airclass-node" >&2
cargo build --release --locked --bin airclass-node >&2

echo "build-deb.sh: man page" >&2
mkdir -p target/man
man_roff=$(mktemp)
trap 'rm -f "$man_roff"' EXIT
if ! target/release/airclass-node man > "$man_roff" || [[ ! -s $man_roff ]]; then
  echo "build-deb.sh: 'airclass-node man' failed or printed nothing" >&2
  exit 1
fi
grep -q '^\.TH ' "$man_roff" || { echo "build-deb.sh: 'airclass-node man' did not print roff (.TH)" >&2; exit 1; }
gzip -9n < "$man_roff" > target/man/airclass-node.8.gz

echo "build-deb.sh: cargo deb --no-build" >&2
out=$(cargo deb --no-build --locked 2>&1 | tee /dev/stderr | tail -1)
deb=$(printf '%s\n' "$out" | grep -oE '/[^ ]*\.deb$' || true)
[[ -n $deb && -f $deb ]] || { echo "build-deb.sh: cargo deb gave no .deb path" >&2; exit 1; }

if [[ ${LINTIAN:-0} == 1 ]]; then
  need lintian "apt-get install lintian"
  echo "build-deb.sh: lintian $deb" >&2
  report=$(lintian --fail-on error,warning --info "$deb" 2>&1) && rc=0 || rc=$?
  [[ -n $report ]] && printf '%s\n' "$report" >&2
  [[ $rc == 0 ]] || { echo "build-deb.sh: lintian found errors or warnings" >&2; exit 1; }
fi
echo "$deb"
