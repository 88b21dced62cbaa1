#!/usr/bin/env python3
"""Parse a Prometheus exposition with the Prometheus project's own Python parser and print
its families as JSON, for tests/metrics (the parser is strict: a malformed line, a counter
without _total, a histogram without +Inf or a missing "# EOF" in OpenMetrics raises).

usage: parse_exposition.py openmetrics|text < exposition
output: [{"name", "type", "unit", "help", "samples": [{"name", "labels", "value"}]}]
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text


def main():
    fmt = sys.argv[1]
    text = sys.stdin.read()
    parse = {"openmetrics": parse_om, "text": parse_text}[fmt]
    out = []
    for fam in parse(text):
        out.append({
            "name": fam.name,
            "type": fam.type,
            "unit": getattr(fam, "unit", ""),
            "help": fam.documentation,
            "samples": [
                {"name": s.name, "labels": s.labels, "value": s.value} for s in fam.samples
            ],
        })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the parser's own message, for the test's failure text
        print(f"parse error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
