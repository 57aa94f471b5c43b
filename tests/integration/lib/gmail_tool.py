#!/usr/bin/env python3
"""Helpers for tests/integration/test_worker_gmail.sh and bench/gmail (not part of the product).

  gmail_tool.py ctl METHOD PATH [JSON]      the emulator's control API (prints the JSON answer)
  gmail_tool.py events TOPIC                committed mail.raw.v1 events of a topic, decoded
                                            against schemas/mail.raw.v1.avsc, one JSON per line
  gmail_tool.py changes TOPIC               committed mail.change.v1 events of a topic, decoded
                                            against schemas/mail.change.v1.avsc, one JSON per
                                            line (with "_offset"), in log order
  gmail_tool.py b64 FILE                    base64url of a file (for POST .../messages)

Environment: LATTICE_TEST_GMAIL_URL (emulator base URL), LATTICE_CA_FILE (its CA),
LATTICE_KAFKA_BOOTSTRAP_SERVERS. Standard library only.
"""
import base64
import json
import os
import ssl
import struct
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mail_events import Reader, decode, read_records  # noqa: E402  (one Avro decoder)

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "..", "schemas", "mail.raw.v1.avsc")
CHANGE_SCHEMA = os.path.join(HERE, "..", "..", "..", "schemas", "mail.change.v1.avsc")


def ctl(method, path, body=None, base=None):
    base = base or os.environ["LATTICE_TEST_GMAIL_URL"]
    ctx = ssl.create_default_context(cafile=os.environ["LATTICE_CA_FILE"])
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + "/_emulator" + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=120) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise SystemExit("control %s %s: HTTP %d %s" % (method, path, e.code, e.read()[:300]))


def events(topic, schema_file=SCHEMA):
    """Print every committed event of topic (mail.raw.v1 or, with CHANGE_SCHEMA,
    mail.change.v1) as one JSON line."""
    schema = json.load(open(schema_file))
    broker = os.environ["LATTICE_KAFKA_BOOTSTRAP_SERVERS"]
    for part, off, key, val in read_records(broker, topic):
        if len(val) < 5 or val[0] != 0:
            raise SystemExit("record %d@%d: not Confluent wire format" % (part, off))
        r = Reader(val[5:])
        ev = decode(schema, r, {})
        if r.p != len(r.d):
            raise SystemExit("record %d@%d: %d trailing bytes" % (part, off, len(r.d) - r.p))
        ev["_key"] = key.decode()
        ev["_schema_id"] = struct.unpack(">i", val[1:5])[0]
        ev["_partition"], ev["_offset"] = part, off
        print(json.dumps(ev, ensure_ascii=False))


def main():
    cmd = sys.argv[1]
    if cmd == "ctl":
        body = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
        print(json.dumps(ctl(sys.argv[2], sys.argv[3], body)))
    elif cmd == "events":
        events(sys.argv[2])
    elif cmd == "changes":
        events(sys.argv[2], CHANGE_SCHEMA)
    elif cmd == "b64":
        with open(sys.argv[2], "rb") as f:
            print(base64.urlsafe_b64encode(f.read()).decode())
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
