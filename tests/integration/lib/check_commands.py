#!/usr/bin/env python3
"""Check sync commands read from stdin against the contract, for the
scheduler's integration tests. Not part of the product.

Input: one command per line, either plain JSON (a dry run's output) or
kcat's `-f '%k\\t%h\\t%s\\n'` (key, headers, value). Prints a JSON summary:
{"count", "by_account": {account: n}, "scopes": {account: [scopes]},
 "trace_ids": [...], "command_ids": [...]} and exits 1 with the reasons on
any command that is not schema-valid, not keyed by its account_id, whose
traceparent header differs from its field, or that is not an incremental
from the scheduler."""
import argparse, json, os, sys
import jsonschema

ap = argparse.ArgumentParser()
ap.add_argument("--schema", required=True)
ap.add_argument("--kcat", action="store_true", help="lines are key<TAB>headers<TAB>json")
args = ap.parse_args()

with open(args.schema, encoding="utf-8") as f:
    schema = json.load(f)
V = jsonschema.Draft202012Validator
validator = V(schema, format_checker=V.FORMAT_CHECKER)
problems, out = [], {"count": 0, "by_account": {}, "scopes": {}, "trace_ids": [], "command_ids": []}
for n, line in enumerate(sys.stdin, 1):
    line = line.rstrip("\n")
    if not line:
        continue
    key = headers = None
    if args.kcat:
        try:
            key, headers, value = line.split("\t", 2)
        except ValueError:
            problems.append(f"line {n}: not key<TAB>headers<TAB>value")
            continue
    else:
        value = line
    try:
        doc = json.loads(value)
    except ValueError as e:
        problems.append(f"line {n}: not JSON: {e}")
        continue
    for e in validator.iter_errors(doc):
        problems.append(f"line {n}: schema: {e.message[:200]}")
    if doc.get("kind") != "incremental" or doc.get("requested_by") != "scheduler":
        problems.append(f"line {n}: not an incremental from the scheduler")
    tp = doc.get("traceparent")
    if not tp:
        problems.append(f"line {n}: no traceparent")
    if args.kcat:
        if key != doc.get("account_id"):
            problems.append(f"line {n}: key {key!r} is not the account_id")
        hs = dict(h.split("=", 1) for h in headers.split(",") if "=" in h)
        if hs.get("traceparent") != tp:
            problems.append(f"line {n}: traceparent header {hs.get('traceparent')!r} != field {tp!r}")
    acct = doc.get("account_id")
    out["count"] += 1
    out["by_account"][acct] = out["by_account"].get(acct, 0) + 1
    out["scopes"].setdefault(acct, []).append(doc.get("scope"))
    if tp and tp.split("-")[1] not in out["trace_ids"]:
        out["trace_ids"].append(tp.split("-")[1])
    out["command_ids"].append(doc.get("command_id"))
if len(set(out["command_ids"])) != len(out["command_ids"]):
    problems.append("duplicate command ids")
print(json.dumps(out, sort_keys=True))
for p in problems:
    print("PROBLEM " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
