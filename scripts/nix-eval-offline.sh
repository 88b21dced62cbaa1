#!/usr/bin/env bash
# Evaluate the flake offline against a local nixpkgs tree, without building anything:
#   NIXPKGS=/path/to/nixpkgs scripts/nix-eval-offline.sh [extra nix flake check args]
# Catches unknown options, type errors, failed assertions and undefined attributes in the
# package, the NixOS module, the appliance and the three-node VM tests, down to .drv files.
#
# The project's tracked files (plus untracked, not ignored ones) are copied to a temporary git
# repository without flake.lock, because a flake only sees tracked files and Nix 2.8 silently
# reuses a locked `path:` input after the tree changed. Debian's nix-bin 2.8 evaluates nixpkgs up
# to 25.05. Env: KEEP=1 keeps the temporary copy; when systemd/ is missing (a branch evaluated
# before the unit files were merged), SYSTEMD_FROM=DIR copies them from DIR, or SYSTEMD_STUB=1
# adds placeholders (the summary line then says so). MYPY=/path/to/mypy (or mypy on PATH) also
# type-checks the VM tests' Python scripts, and pyflakes (PYFLAKES=, or `python3 -m pyflakes`)
# lints them, the way the test driver build does.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

: "${NIXPKGS:?set NIXPKGS to a nixpkgs tree (e.g. /var/tmp/nixpkgs-24.11)}"
NIXPKGS="$(cd "$NIXPKGS" && pwd)"
[ -f "$NIXPKGS/default.nix" ] && [ -d "$NIXPKGS/nixos" ] || { echo "$NIXPKGS is not a nixpkgs tree" >&2; exit 2; }
if [ ! -f "$NIXPKGS/pkgs/development/haskell-modules/hackage-packages.nix" ]; then
    echo "$NIXPKGS lacks pkgs/development/haskell-modules/hackage-packages.nix (see docs/nix.md)" >&2
    exit 2
fi
command -v nix >/dev/null || { echo "nix not found (apt-get install nix-bin)" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/airclass-flake.XXXXXX")"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$tmp"' EXIT; else echo "copy kept in $tmp" >&2; fi
export NIX_STATE_DIR="${NIX_STATE_DIR:-$tmp/.nix/state}" NIX_LOG_DIR="${NIX_LOG_DIR:-$tmp/.nix/log}"
export XDG_CACHE_HOME="$tmp/.nix/cache"

src="$tmp/src"
mkdir -p "$src"
(cd "$here" && git ls-files -z --cached --others --exclude-standard) \
    | (cd "$here" && xargs -0 -r cp --parents -a -t "$src" 2>/dev/null || true)
rm -f "$src/flake.lock"

stub=""
if [ ! -f "$src/systemd/airclass-node@.service" ]; then
    if [ -n "${SYSTEMD_FROM:-}" ]; then
        mkdir -p "$src/systemd"
        cp -a "$SYSTEMD_FROM"/airclass-node@.service "$SYSTEMD_FROM"/airclass-node.target \
            "$SYSTEMD_FROM"/airclass-node.sysusers "$src/systemd/"
        stub=" (systemd/ copied from $SYSTEMD_FROM)"
    elif [ "${SYSTEMD_STUB:-0}" = 1 ]; then
        mkdir -p "$src/systemd"
        printf '[Service]\nExecStart=/usr/bin/airclass-node run --instance %%i\n' >"$src/systemd/airclass-node@.service"
        printf '[Unit]\nDescription=stub\n' >"$src/systemd/airclass-node.target"
        printf 'u airclass - "airclass-node"\n' >"$src/systemd/airclass-node.sysusers"
        stub=" (with PLACEHOLDER systemd/ files: this branch has none)"
    else
        echo "systemd/airclass-node@.service is missing; the package's source set needs it (SYSTEMD_STUB=1 to evaluate anyway)" >&2
        exit 2
    fi
fi

git -C "$src" init -q
git -C "$src" add -A
git -C "$src" -c user.name=eval -c user.email=eval@localhost commit -q -m snapshot

echo "evaluating $(basename "$here") against $NIXPKGS ($(cat "$NIXPKGS/.version" 2>/dev/null || echo '?'))$stub" >&2
start=$(date +%s)
export NIX_CONFIG="experimental-features = nix-command flakes
sandbox = false
substituters =
warn-dirty = false"
flake="git+file://$src"
nix flake check --no-build --no-write-lock-file \
    --override-input nixpkgs "path:$NIXPKGS" "$@" "$flake"
summary="flake check --no-build passed in $(( $(date +%s) - start )) s"

# testScript mistakes surface only when the driver is built; approximate its pyflakes and mypy
# steps (nixos/lib/testing/driver.nix).
mypy="${MYPY:-$(command -v mypy || true)}"
pyflakes="${PYFLAKES:-}"
if [ -z "$pyflakes" ] && python3 -m pyflakes --version >/dev/null 2>&1; then pyflakes="python3 -m pyflakes"; fi
if [ -n "$mypy" ] || [ -n "$pyflakes" ]; then
    system="$(nix eval --raw --impure --expr builtins.currentSystem)"
    evalq() { nix eval --no-write-lock-file --override-input nixpkgs "path:$NIXPKGS" "$@" 2>"$tmp/eval.err" \
        || { cat "$tmp/eval.err" >&2; return 1; }; }
    # One evaluation for all VM tests: { name = { nodes = [ … ]; script = "…"; }; }
    evalq --json "$flake#checks.$system" --apply '
      cs: builtins.listToAttrs (map (n: { name = n; value = {
            nodes = builtins.attrNames cs.${n}.nodes;
            script = cs.${n}.config.testScriptString; }; })
        (builtins.filter (n: cs.${n} ? config && cs.${n}.config ? testScriptString)
          (builtins.attrNames cs)))' >"$tmp/tests.json"
    tests=$(python3 - "$tmp/tests.json" "$NIXPKGS/nixos/lib/test-script-prepend.py" "$tmp" <<'PY'
import json, sys
tests = json.load(open(sys.argv[1]))
prepend = open(sys.argv[2]).read()
for name, t in sorted(tests.items()):
    with open(f"{sys.argv[3]}/{name}.py", "w") as f:
        f.write(prepend + "\n" + "".join(f"{n}: Machine;\n" for n in t["nodes"]) + t["script"])
    print(name)
PY
)
    # pyflakes as the driver build runs it: the bare script, with the machine names and the
    # driver's symbols (Driver.test_symbols) as builtins.
    symbols=$(python3 - "$NIXPKGS/nixos/lib/test-driver/test_driver/driver.py" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
block = src[src.index("general_symbols = dict("):]
block = block[: block.index("\n        )")]
print(",".join(re.findall(r"^\s+(\w+)=", block, re.M)))
PY
)
    for t in $tests; do
        if [ -n "$mypy" ]; then
            MYPYPATH="$NIXPKGS/nixos/lib/test-driver" "$mypy" --no-implicit-optional --ignore-missing-imports \
                --follow-imports=silent "$tmp/$t.py" >"$tmp/mypy.out" 2>&1 \
                || { cat "$tmp/mypy.out" >&2; echo "nix-eval-offline: FAIL: testScript of $t does not type-check" >&2; exit 1; }
        fi
        if [ -n "$pyflakes" ]; then
            python3 - "$tmp/tests.json" "$t" "$tmp/$t.bare.py" "$tmp/$t.names" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))[sys.argv[2]]
open(sys.argv[3], "w").write(t["script"])
open(sys.argv[4], "w").write(",".join(n.replace("-", "_") for n in t["nodes"]))
PY
            PYFLAKES_BUILTINS="$(cat "$tmp/$t.names"),$symbols" $pyflakes "$tmp/$t.bare.py" >"$tmp/pyflakes.out" 2>&1 \
                || { cat "$tmp/pyflakes.out" >&2; echo "nix-eval-offline: FAIL: pyflakes finds problems in the testScript of $t" >&2; exit 1; }
        fi
    done
    tests=$(echo $tests)
    summary="$summary; ${mypy:+mypy }${pyflakes:+pyflakes }ok for: ${tests:-no VM tests}"
    [ -n "$mypy" ] || summary="$summary (mypy not run: set MYPY=)"
    [ -n "$pyflakes" ] || summary="$summary (pyflakes not run: pip install pyflakes, or set PYFLAKES=)"
else
    summary="$summary; testScripts not checked (neither mypy nor pyflakes: set MYPY= / PYFLAKES=)"
fi
echo "nix-eval-offline: ok: $summary$stub"
