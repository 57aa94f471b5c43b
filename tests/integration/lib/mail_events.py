#!/usr/bin/env python3
"""Decode committed mail.raw.v1 events of a topic for integration tests.

There is no decoder program in tools/; this reads records with kcat
(read_committed) and decodes the Confluent wire format (0x00, 4-byte schema
id, Avro binary) against schemas/mail.raw.v1.avsc, the schema the worker
registers. Standard library only. Not part of the product.

  mail_events.py --topic T [--account A] [--broker B] [--schema mail.change.v1]

prints one JSON object per event (Avro field names, nested as in the
schema, plus "_offset", "_partition" and "_schema_id"), in log order.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "schemas",
                      "mail.raw.v1.avsc")


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

    def bytes(self):
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
            return r.bytes().decode("utf-8")
        if schema == "bytes":
            return r.bytes().hex()
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
                    k = r.bytes().decode("utf-8")
                    out[k] = decode(schema["values"], r, names)
    return decode(t, r, names)


def read_records(broker, topic):
    """(partition, offset, key, value) of every committed record, via kcat."""
    fmt = "%p %o %S %K %k\n%s"  # %K: key length; binary-safe framing by lengths
    out = subprocess.run(
        ["kcat", "-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q",
         "-X", "isolation.level=read_committed", "-f", fmt],
        check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    p = 0
    while p < len(out):
        nl = out.index(b" ", p)
        part = int(out[p:nl]); p = nl + 1
        nl = out.index(b" ", p)
        off = int(out[p:nl]); p = nl + 1
        nl = out.index(b" ", p)
        vlen = int(out[p:nl]); p = nl + 1
        nl = out.index(b" ", p)
        klen = int(out[p:nl]); p = nl + 1
        key = out[p:p + max(klen, 0)]; p += max(klen, 0)
        if out[p:p + 1] != b"\n":
            raise ValueError("bad kcat framing at %d" % p)
        p += 1
        val = out[p:p + max(vlen, 0)]; p += max(vlen, 0)
        yield part, off, key, val


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--topic", required=True)
    a.add_argument("--account")
    a.add_argument("--broker", default=os.environ.get("LATTICE_KAFKA_BOOTSTRAP_SERVERS"))
    a.add_argument("--schema", default="mail.raw.v1",
                   help="the schema of schemas/ the topic's records are written with")
    args = a.parse_args()
    schema = json.load(open(os.path.join(os.path.dirname(SCHEMA), args.schema + ".avsc")))
    for part, off, key, val in read_records(args.broker, args.topic):
        if args.account is not None and key != args.account.encode():
            continue
        if len(val) < 5 or val[0] != 0:
            raise SystemExit("record %d@%d: not Confluent wire format" % (part, off))
        r = Reader(val[5:])
        ev = decode(schema, r, {})
        if r.p != len(r.d):
            raise SystemExit("record %d@%d: %d trailing bytes" % (part, off, len(r.d) - r.p))
        ev["_partition"], ev["_offset"] = part, off
        ev["_schema_id"] = struct.unpack(">i", val[1:5])[0]
        sys.stdout.write(json.dumps(ev, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
