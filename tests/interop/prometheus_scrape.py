#!/usr/bin/env python3
"""Scrapes a Portcullis `/metrics` endpoint and parses it with the reference Prometheus parser.

Uses `prometheus_client.parser.text_string_to_metric_families` (PyPI `prometheus_client`, the
official Python client, installed by scripts/test.sh), so the exposition is checked by a real
Prometheus parser rather than by the server's own idea of the format. Also checks what that
parser lets through: the Content-Type of the text format 0.0.4, one HELP and one TYPE per
family, counters ending in `_total`, histogram buckets cumulative with a `+Inf` bucket equal to
`_count`.

Prints one JSON object: {"families": {name: type}, "samples": [[name, {labels}, value], ...]}.
Exits non-zero (with the reason on stderr) if the exposition does not parse or check.
"""
import argparse
import json
import math
import sys
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    print(f"prometheus_scrape: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    args = ap.parse_args()
    with urllib.request.urlopen(args.url, timeout=10) as r:
        ctype = r.headers.get("Content-Type", "")
        body = r.read().decode("utf-8")
    if not ctype.startswith("text/plain; version=0.0.4"):
        fail(f"Content-Type {ctype!r} is not the text format 0.0.4")

    helps = [l.split(" ")[2] for l in body.splitlines() if l.startswith("# HELP ")]
    types = [l.split(" ")[2] for l in body.splitlines() if l.startswith("# TYPE ")]
    if len(helps) != len(set(helps)) or sorted(helps) != sorted(types):
        fail("every family needs exactly one HELP and one TYPE line")

    try:
        families = list(text_string_to_metric_families(body))
    except Exception as e:  # the parser raises ValueError and friends on bad input
        fail(f"the exposition does not parse: {e!r}")

    out = {"families": {}, "samples": []}
    for fam in families:
        # The parser names counter families without their `_total` suffix.
        out["families"][fam.name] = fam.type
        if not fam.name.startswith("portcullis_"):
            fail(f"family {fam.name} lacks the portcullis_ prefix")
        if fam.type == "counter":
            if any(not s.name.endswith("_total") for s in fam.samples):
                fail(f"counter {fam.name} has a sample without the _total suffix")
        buckets = defaultdict(list)
        counts = {}
        for s in fam.samples:
            out["samples"].append([s.name, s.labels, s.value])
            if fam.type == "histogram":
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                if s.name.endswith("_bucket"):
                    buckets[key].append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    counts[key] = s.value
        for key, bs in buckets.items():
            bounds = [b for b, _ in bs]
            values = [v for _, v in bs]
            if bounds != sorted(bounds) or not math.isinf(bounds[-1]):
                fail(f"{fam.name}{dict(key)}: buckets not in order or no +Inf bucket")
            if values != sorted(values):
                fail(f"{fam.name}{dict(key)}: buckets are not cumulative")
            if counts.get(key) != values[-1]:
                fail(f"{fam.name}{dict(key)}: _count differs from the +Inf bucket")
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
