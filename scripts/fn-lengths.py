#!/usr/bin/env python3
"""scripts/fn-lengths.py - the longest Rust functions, and a gate on functions over a limit.

Usage: scripts/fn-lengths.py [--top N] [--limit L] [--check] [--all] PATH...
  Lists functions (name, lines, file:line), longest first. A function counts from its `fn` line
  to its closing brace. With --check, exits 1 when a function outside tests is longer than
  --limit (default 80) lines and the comment block right above it has no line starting with
  `// long:` (the written reason). Test code (`#[cfg(test)]` modules, files named tests.rs or
  under a tests/ folder, `#[test]` functions) is listed only with --all and never gated.
"""
import argparse
import os
import re
import sys

FN_RE = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def strip_code(text):
    """Blank out comments, strings and char literals, keeping newlines and offsets."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 260]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    text = open(path, encoding="utf-8").read()
    lines = text.split("\n")
    code = strip_code(text)
    line_starts = [0]
    for ln in code.split("\n"):
        line_starts.append(line_starts[-1] + len(ln) + 1)

    def line_of(off):
        lo, hi = 0, len(line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if line_starts[mid] <= off:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    # test regions: `#[cfg(test)]` followed by `mod x {`
    test_ranges = []
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", code):
        start = m.end() - 1
        end = match_brace(code, start)
        test_ranges.append((start, end))
    whole_file_test = os.path.basename(path) == "tests.rs" or "/tests/" in "/" + path
    out = []
    for m in FN_RE.finditer(code):
        # the body: first `{` after the signature at depth 0 of parens, unless a `;` comes first
        j, depth = m.end(), 0
        while j < len(code):
            ch = code[j]
            if ch in "([<":
                depth += 1
            elif ch in ")]>":
                depth = max(0, depth - 1)
            elif ch == ";" and depth == 0:
                j = -1
                break
            elif ch == "{" and depth == 0:
                break
            j += 1
        if j < 0 or j >= len(code):
            continue
        end = match_brace(code, j)
        first, last = line_of(m.start()), line_of(end)
        above = lines[max(0, first - 40):first - 1]
        is_test = whole_file_test or any(a <= m.start() <= b for a, b in test_ranges)
        reason = None
        for ln in reversed(above):  # the comment and attribute block right above the fn
            s = ln.strip()
            if not (s.startswith("//") or s.startswith("#[")):
                break
            if s.startswith("#[test]") or s.startswith("#[tokio::test"):
                is_test = True
            if s.startswith("// long:"):
                reason = s[len("// long:"):].strip()
        out.append({"name": m.group(1), "lines": last - first + 1, "path": path,
                    "line": first, "test": is_test, "reason": reason})
    return out


def match_brace(code, start):
    depth = 0
    for k in range(start, len(code)):
        if code[k] == "{":
            depth += 1
        elif code[k] == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(code) - 1


def rust_files(paths):
    for p in paths:
        if os.path.isfile(p):
            yield p
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = [d for d in dirs if d not in ("target", ".git")]
            for f in sorted(files):
                if f.endswith(".rs"):
                    yield os.path.join(root, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--all", action="store_true", help="also list test functions")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    fns = [f for p in rust_files(a.paths) for f in functions(p)]
    shown = [f for f in fns if a.all or not f["test"]]
    shown.sort(key=lambda f: -f["lines"])
    for f in shown[:a.top]:
        note = " (test)" if f["test"] else ""
        if f["reason"]:
            note += " (long: " + f["reason"] + ")"
        print(f"{f['lines']:5}  {f['name']:32} {f['path']}:{f['line']}{note}")
    over = [f for f in fns if not f["test"] and f["lines"] > a.limit and not f["reason"]]
    if a.check and over:
        print(f"\n{len(over)} function(s) over {a.limit} lines without a `// long:` reason above them:",
              file=sys.stderr)
        for f in over:
            print(f"  {f['name']} ({f['lines']} lines) {f['path']}:{f['line']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
