#!/usr/bin/env bash
# The JSON Schema schemas/sync-command.v1.schema.json agrees with the example
# commands that tests/unit/test_command.c feeds the C parser:
#   tests/data/commands/valid/*.json           valid for both
#   tests/data/commands/invalid/*.json         rejected by both
#   tests/data/commands/invalid-c-only/*.json  rejected by the C parser only:
#       what JSON Schema cannot say (start <= end, 1.0 is an integer to JSON
#       Schema, duplicate names vanish in Python's json). Checked here to be
#       schema-valid, so that the list of differences stays honest.
# Needs python3 with jsonschema >= 4 (Debian: python3-jsonschema).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# The first interpreter that has it: python3 on PATH, else Debian's.
py=""
for cand in python3 /usr/bin/python3; do
  if "$cand" -c 'import jsonschema, sys; sys.exit(0 if hasattr(jsonschema.Draft202012Validator, "FORMAT_CHECKER") else 1)' 2>/dev/null; then
    py="$cand"; break
  fi
done
if [ -z "$py" ]; then
  echo "test_command_schema: python3 module jsonschema (>= 4.5, Draft 2020-12) is missing:" \
       "apt-get install python3-jsonschema (deploy/local/install-deps)" >&2
  exit 1
fi
exec "$py" - "$root" <<'PY'
import glob, json, os, sys
import jsonschema

root = sys.argv[1]
with open(os.path.join(root, "schemas/sync-command.v1.schema.json"), encoding="utf-8") as f:
    schema = json.load(f)
V = jsonschema.Draft202012Validator
V.check_schema(schema)
validator = V(schema, format_checker=V.FORMAT_CHECKER)
data = os.path.join(root, "tests/data/commands")
passed = failed = 0

def check(path, want_valid):
    global passed, failed
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    ok = (not errors) == want_valid
    if ok:
        passed += 1
    else:
        failed += 1
        why = "; ".join(e.message[:200] for e in errors) or "accepted"
        print(f"FAIL {os.path.relpath(path, root)}: expected "
              f"{'valid' if want_valid else 'invalid'}: {why}", file=sys.stderr)

for sub, want in (("valid", True), ("invalid", False), ("invalid-c-only", True)):
    files = sorted(glob.glob(os.path.join(data, sub, "*.json")))
    if not files:
        print(f"FAIL no examples in {sub}", file=sys.stderr)
        failed += 1
    for p in files:
        check(p, want)
print(f"test_command_schema: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
