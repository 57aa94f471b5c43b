#!/usr/bin/env python3
"""Fetch every attachment of mail.raw.v1 events the way a consumer would and
check it against its manifest entry (size_bytes, sha256).

  mail_events.py --topic T --account A | attachment_check.py

An entry with encoded_offset is a range of the object at object_uri (the raw
.eml): it is read with an HTTP Range GET and decoded here with Python's own
decoders (base64, quoted-printable, binary), independently of the worker's
gmime; an entry without is a whole object holding the decoded attachment.
Prints one line per entry: "ranged|object <pmid> <attachment_id>" when it
matches, "bad <pmid> <attachment_id> <why>" otherwise. S3 settings from the
environment (LATTICE_S3_*). Standard library and curl only. Not part of the
product.
"""
import base64
import binascii
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.parse

BUCKET_URI = "s3://%s/" % os.environ["LATTICE_S3_BUCKET"]


def get(uri, first=None, last=None):
    if not uri.startswith(BUCKET_URI):
        raise ValueError("not in the bucket: %s" % uri)
    path = urllib.parse.quote(uri[len(BUCKET_URI):], safe="/-._~")
    cmd = ["curl", "-sf", "--aws-sigv4", "aws:amz:%s:s3" % os.environ.get("LATTICE_S3_REGION", "us-east-1"),
           "--user", "%s:%s" % (os.environ["LATTICE_S3_ACCESS_KEY_ID"], os.environ["LATTICE_S3_SECRET_ACCESS_KEY"]),
           "-H", "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
    if first is not None:
        cmd += ["-H", "Range: bytes=%d-%d" % (first, last)]
    cmd.append("%s/%s/%s" % (os.environ["LATTICE_S3_ENDPOINT"], os.environ["LATTICE_S3_BUCKET"], path))
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout


def decode(enc, data):
    if enc == "base64":  # RFC 2045: characters outside the alphabet are ignored
        s = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        s = s[: len(s) - len(s) % 4] if len(s) % 4 == 1 else s
        return base64.b64decode(s + b"=" * (-len(s) % 4))
    if enc == "quoted-printable":
        return binascii.a2b_qp(data)
    if enc == "binary":
        return data
    raise ValueError("unknown transfer_encoding %r" % enc)


def main():
    for line in sys.stdin:
        ev = json.loads(line)
        p = ev["payload"]
        for a in p.get("attachments_manifest") or []:
            pmid, aid = p["provider_message_id"], a["attachment_id"]
            try:
                off = a.get("encoded_offset")
                if off is not None:
                    if a["object_uri"] != p["raw_object_uri"]:
                        raise ValueError("ranged entry not in the raw object")
                    n = a["encoded_length"]
                    data = decode(a["transfer_encoding"], get(a["object_uri"], off, off + n - 1) if n else b"")
                    kind = "ranged"
                else:
                    data = get(a["object_uri"])
                    kind = "object"
                if len(data) != a["size_bytes"] or hashlib.sha256(data).hexdigest() != a["sha256"]:
                    raise ValueError("%d bytes, sha256 %s; manifest says %d, %s" % (
                        len(data), hashlib.sha256(data).hexdigest(), a["size_bytes"], a["sha256"]))
                print("%s %s %s" % (kind, pmid, aid))
            except Exception as e:  # noqa: BLE001 - reported, the test counts
                print("bad %s %s %s" % (pmid, aid, e))


if __name__ == "__main__":
    main()
