#!/usr/bin/env python3
"""Write the edge-case messages of test_worker_imap_edge.sh into DIR.

  edge_corpus.py DIR KIND [--size N]

KIND big:      DIR/big.eml, about N bytes (default 25 MiB) with one large
               base64 attachment.
KIND many:     DIR/many.eml, one message with 60 small attachments.
KIND weird:    DIR/NN-<what>.eml: 8-bit headers and bodies without MIME
               (Latin-1 and UTF-8), malformed MIME (no closing boundary,
               bad base64, broken headers, nested multiparts cut short), a
               NUL byte, a header-only message.
KIND plain:    DIR/plain-NN.eml, a few small ordinary messages.
KIND poison:   DIR/poison-ctype.eml (an attachment whose Content-Type is over
               300 bytes), DIR/poison-wide.eml (1,000 attachments with
               600-byte file names: its whole manifest is over 1 MB),
               DIR/poison-refused.eml (21,000 boundary-like lines: over the
               MIME structure cap, the parser refuses it), DIR/normal-NN.eml.
All line ends are CRLF (Dovecot turns bare LF into CRLF on APPEND, so a
LF-only message would not come back byte for byte). Deterministic content.
Not part of the product."""
import argparse
import base64
import os
import random


def b64(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def head(subject, extra=""):
    return ("From: Edge Test <edge@example.test>\r\nTo: alice@example.test\r\n"
            "Subject: %s\r\nDate: Wed, 25 Nov 2026 12:00:00 +0000\r\n"
            "Message-ID: <%s@edge.example.test>\r\n%s" % (subject, subject.replace(" ", "."), extra)
            ).encode()


def big(size):
    rng = random.Random("big")
    boundary = b"=_edge_big"
    pre = head("edge big", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_edge_big\"\r\n") + \
        b"\r\n--" + boundary + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nA large attachment follows.\r\n" + \
        b"--" + boundary + b"\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n" \
        b"Content-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    post = b"--" + boundary + b"--\r\n"
    # base64 lines are 76 chars + CRLF for 57 input bytes
    nlines = max(1, (size - len(pre) - len(post)) // 78)
    raw = rng.randbytes(57 * 64)
    block = raw * (nlines // 64 + 1)
    body = b64(block[:nlines * 57])
    return pre + body + post


def many(n=60):
    boundary = "=_edge_many"
    out = head("edge many", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"%s\"\r\n" % boundary)
    out += b"\r\n--" + boundary.encode() + b"\r\nContent-Type: text/plain\r\n\r\n%d attachments.\r\n" % n
    for i in range(n):
        data = ("attachment %d " % i).encode() * (10 + i)
        out += ("--%s\r\nContent-Type: application/octet-stream\r\n"
                "Content-Disposition: attachment; filename=\"file-%02d.bin\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n" % (boundary, i)).encode() + b64(data)
    return out + b"--" + boundary.encode() + b"--\r\n"


def weird():
    m = {}
    m["01-latin1-raw"] = (b"From: J\xfcrgen M\xfcller <j@example.test>\r\nTo: alice@example.test\r\n"
                          b"Subject: Gr\xfc\xdfe aus K\xf6ln\r\nMessage-ID: <latin1@edge>\r\n\r\n"
                          b"Sch\xf6ne Gr\xfc\xdfe, \xe9t\xe9 \xa3 \xb0\r\n")
    m["02-utf8-raw"] = ("From: Zoë Ærø <z@example.test>\r\nTo: alice@example.test\r\n"
                        "Subject: 日本語 Привет Grüße\r\nMessage-ID: <utf8@edge>\r\n\r\n"
                        "Body: 日本語のテキスト, Ελληνικά, 🙂\r\n").encode()
    m["03-no-close-boundary"] = head("no close", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n") + \
        b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\ntext\r\n--b1\r\nContent-Type: application/pdf\r\n" \
        b"Content-Disposition: attachment; filename=\"cut.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + \
        b64(b"%PDF-1.4 " * 50)[:300] + b"\r\n"
    m["04-bad-base64"] = head("bad base64", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b2\"\r\n") + \
        b"\r\n--b2\r\nContent-Type: text/plain\r\n\r\ntext\r\n--b2\r\nContent-Type: image/png\r\n" \
        b"Content-Disposition: attachment; filename=\"bad.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" \
        b"iVBORw0K!!!GgoAAAA*NSUhEUgAA%%%AAEAAAABCAYAAAAfFcSJAAAAD==UlEQVR4nGNgYGD4\r\n====\r\n@@@@\r\n--b2--\r\n"
    m["05-broken-headers"] = (b"From: <broken@example.test\r\nTo alice@example.test\r\n: empty name\r\n"
                              b"Subject: =?utf-8?B?broken?=\r\n\tcontinued without header\r\n"
                              b"Content-Type: text/plain; charset=\"utf-8\r\nX-Very-Long: " + b"x" * 5000 +
                              b"\r\nNoColonHere\r\n\r\nbody\r\n")
    nest = head("nested cut", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"n0\"\r\n") + b"\r\n"
    for d in range(12):
        nest += ("--n%d\r\nContent-Type: multipart/mixed; boundary=\"n%d\"\r\n\r\n" % (d, d + 1)).encode()
    nest += b"--n12\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"deep.bin\"\r\n" \
        b"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQF"  # cut: no CRLF, no closing boundaries
    m["06-nested-truncated"] = nest
    m["07-nul-byte"] = head("nul byte") + b"\r\nbefore\x00after\r\n\x00\x00\r\n"
    m["08-header-only"] = head("header only")
    m["09-8bit-no-mime-mixed"] = (b"Subject: mixed \xe9 and \xc3\xa9\r\nFrom: x@example.test\r\n\r\n"
                                  b"latin1 \xe9\xe8 utf8 \xc3\xa9 invalid \xff\xfe\xc3\r\n")
    m["10-wrong-cte"] = head("wrong cte", "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
                             "Content-Transfer-Encoding: x-unknown-cte\r\n") + b"\r\nplain\r\n"
    return m


def poison():
    m = {}
    m["poison-ctype"] = head("poison ctype", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"pc\"\r\n") + \
        b"\r\n--pc\r\nContent-Type: text/plain\r\n\r\nhostile content type\r\n--pc\r\n" \
        b"Content-Type: application/" + b"x" * 300 + b"\r\n" \
        b"Content-Disposition: attachment; filename=\"hostile.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + \
        b64(b"hostile " * 20) + b"--pc--\r\n"
    wide = head("poison wide", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"pw\"\r\n") + \
        b"\r\n--pw\r\nContent-Type: text/plain\r\n\r\n1000 attachments\r\n"
    for i in range(1000):
        name = ("%04d-" % i) + "n" * 591 + ".bin"
        wide += ("--pw\r\nContent-Type: application/octet-stream\r\n"
                 "Content-Disposition: attachment; filename=\"%s\"\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\n" % name).encode() + b64(b"w%d" % i)
    m["poison-wide"] = wide + b"--pw--\r\n"
    m["poison-refused"] = head("poison refused", "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"pr\"\r\n") + \
        b"\r\n--pr\r\nContent-Type: text/plain\r\n\r\nrefused\r\n" + b"--x\r\n" * 21000 + b"--pr--\r\n"
    for i in range(4):
        m["normal-%02d" % i] = head("normal %d" % i) + b"\r\nnormal body %d\r\n" % i
    return m


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("kind", choices=["big", "many", "weird", "plain", "poison"])
    p.add_argument("--size", type=int, default=25 << 20)
    p.add_argument("--name", default=None)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    if a.kind == "big":
        msgs = {a.name or "big": big(a.size)}
    elif a.kind == "many":
        msgs = {"many": many()}
    elif a.kind == "weird":
        msgs = weird()
    elif a.kind == "poison":
        msgs = poison()
    else:
        msgs = {"plain-%02d" % i: head("plain %d" % i) + b"\r\nplain body %d\r\n" % i for i in range(3)}
    for name, data in msgs.items():
        assert b"\n" not in data.replace(b"\r\n", b""), name
        with open(os.path.join(a.dir, name + ".eml"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
