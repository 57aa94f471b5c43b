#!/usr/bin/env python3
"""Helpers for tests/integration/test_worker_gmail.sh and bench/gmail (not part of the product).

  gmail_tool.py ctl METHOD PATH [JSON]      the emulator's control API (prints the JSON answer)
  gmail_tool.py events TOPIC                committed mail.raw.v1 events of a topic, decoded
                                            against schemas/mail.raw.v1.avsc, one JSON per line
  gmail_tool.py b64 FILE                    base64url of a file (for POST .../messages)

Environment: LATTICE_TEST_GMAIL_URL (emulator base URL), LATTICE_CA_FILE (its CA),
LATTICE_KAFKA_BOOTSTRAP_SERVERS. Standard library only.
"""
import base64
import json
import os
import ssl
import struct
import subprocess
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "..", "schemas", "mail.raw.v1.avsc")


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


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def long(self):
        shift, n = 0, 0
        while True:
            b = self.d[self.p]
            self.p += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return (n >> 1) ^ -(n & 1)

    def raw(self):
        n = self.long()
        if n < 0 or self.p + n > len(self.d):
            raise ValueError("bad length %d at %d" % (n, self.p))
        v = self.d[self.p:self.p + n]
        self.p += n
        return v


def decode(schema, r, names):
    """Generic Avro binary decoding; raises on anything that does not fit the schema."""
    if isinstance(schema, list):
        i = r.long()
        if not 0 <= i < len(schema):
            raise ValueError("union index %d out of range" % i)
        return decode(schema[i], r, names)
    if isinstance(schema, str):
        if schema == "string":
            return r.raw().decode("utf-8")
        if schema == "bytes":
            return r.raw().hex()
        if schema in ("long", "int"):
            return r.long()
        if schema == "null":
            return None
        if schema == "boolean":
            v = r.d[r.p]
            r.p += 1
            if v > 1:
                raise ValueError("bad boolean")
            return bool(v)
        if schema in names:
            return decode(names[schema], r, names)
        raise ValueError("unsupported type %s" % schema)
    t = schema["type"]
    if t == "record":
        names[schema["name"]] = schema
        if "namespace" in schema:
            names[schema["namespace"] + "." + schema["name"]] = schema
        return {f["name"]: decode(f["type"], r, names) for f in schema["fields"]}
    if t == "enum":
        names[schema["name"]] = schema
        i = r.long()
        if not 0 <= i < len(schema["symbols"]):
            raise ValueError("enum index %d out of range" % i)
        return schema["symbols"][i]
    if t == "fixed":
        names[schema["name"]] = schema
        v = r.d[r.p:r.p + schema["size"]]
        r.p += schema["size"]
        return v.hex()
    if t in ("array", "map"):
        out = [] if t == "array" else {}
        while True:
            n = r.long()
            if n == 0:
                return out
            if n < 0:
                n = -n
                r.long()
            for _ in range(n):
                if t == "array":
                    out.append(decode(schema["items"], r, names))
                else:
                    k = r.raw().decode("utf-8")
                    out[k] = decode(schema["values"], r, names)
    return decode(t, r, names)


def events(topic):
    broker = os.environ["LATTICE_KAFKA_BOOTSTRAP_SERVERS"]
    fmt = "%p %o %S %K %k\n%s"
    out = subprocess.run(["kcat", "-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q",
                          "-X", "isolation.level=read_committed", "-f", fmt],
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    schema = json.load(open(SCHEMA))
    p = 0
    while p < len(out):
        fields = []
        for _ in range(4):
            sp = out.index(b" ", p)
            fields.append(int(out[p:sp]))
            p = sp + 1
        part, off, vlen, klen = fields
        key = out[p:p + max(klen, 0)]
        p += max(klen, 0)
        if out[p:p + 1] != b"\n":
            raise SystemExit("bad kcat framing at %d" % p)
        p += 1
        val = out[p:p + max(vlen, 0)]
        p += max(vlen, 0)
        if len(val) < 5 or val[0] != 0:
            raise SystemExit("record %d@%d: not Confluent wire format" % (part, off))
        r = Reader(val[5:])
        ev = decode(schema, r, {})
        if r.p != len(r.d):
            raise SystemExit("record %d@%d: %d trailing bytes" % (part, off, len(r.d) - r.p))
        ev["_key"] = key.decode()
        ev["_schema_id"] = struct.unpack(">i", val[1:5])[0]
        print(json.dumps(ev, ensure_ascii=False))


def main():
    cmd = sys.argv[1]
    if cmd == "ctl":
        body = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
        print(json.dumps(ctl(sys.argv[2], sys.argv[3], body)))
    elif cmd == "events":
        events(sys.argv[2])
    elif cmd == "b64":
        with open(sys.argv[2], "rb") as f:
            print(base64.urlsafe_b64encode(f.read()).decode())
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
