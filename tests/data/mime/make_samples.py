#!/usr/bin/env python3
"""Writes the sample messages of tests/unit/test_mime.c and prints the
expected decoded sizes / SHA-256 of their attachments, computed here with
hashlib (independently of the C code). Run from this folder; the .eml files
are committed, so this is only needed to change them."""
import base64, hashlib, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))

def write(name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)

def b64(data, width=76):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i:i + width] for i in range(0, len(s), width)) + "\n"

def report(label, data):
    print("%-28s size=%-6d sha256=%s" % (label, len(data), hashlib.sha256(data).hexdigest()))

# 1. plain ASCII, every header accessor
write("plain.eml", """Return-Path: <alice@example.com>
Message-ID: <plain-1@example.com>
Date: Tue, 25 Nov 2025 10:30:00 +0100
From: Alice Example <alice@example.com>
To: Bob <bob@example.org>, carol@example.net
Cc: "Doe, John" <john@example.com>, Team: dan@example.com, erin@example.com;
Reply-To: replies@example.com
Subject: Hello plain
In-Reply-To: <prev@example.com>
References: <root@example.com>
 <prev@example.com>
X-Custom: folded
 value

Hello Bob,

This is plain ASCII.
-- 
Alice
""")

# 2. multipart/alternative: text/plain (quoted-printable UTF-8) + text/html
write("alternative.eml", """Message-ID: <alt-1@example.com>
Date: Wed, 26 Nov 2025 08:00:00 +0000
From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>
To: team@example.com
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from the team
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-boundary"

--alt-boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hallo, Gr=C3=BC=C3=9Fe aus M=C3=BCnchen. This line is long enough to need a=
 soft break.

--alt-boundary
Content-Type: text/html; charset=utf-8

<html><body><p>Hallo</p></body></html>

--alt-boundary--
""")

# 3. multipart/mixed with 3 attachments, ISO-8859-1 RFC 2047 subject
pdf = b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n"
euro = "euro sign: \u20ac\r\n".encode("utf-8")
cafe = b"\x00\x01binary\xff\xfe"
report("mixed3 report.pdf", pdf)
report("mixed3 euro.txt", euro)
report("mixed3 cafe.bin", cafe)
write("mixed3.eml", """Message-ID: <mixed-3@example.com>
Date: Thu, 27 Nov 2025 23:59:59 -0500
From: "Caf\u00e9 Owner" <owner@example.fr>
To: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>
Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?= =?ISO-8859-1?Q?_menu?=
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix"

This is a multi-part message in MIME format.
--mix
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

Voici le menu du caf=E9.

--mix
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

""".encode("latin-1").replace(b"Caf\xe9 Owner", "Caf\u00e9 Owner".encode("utf-8")) + b64(pdf).encode() + b"""
--mix
Content-Type: text/plain; charset=UTF-8
Content-Disposition: attachment;
 filename*=UTF-8''%E2%82%AC.txt
Content-Transfer-Encoding: base64

""" + b64(euro).encode() + b"""
--mix
Content-Type: application/octet-stream; name="=?ISO-8859-1?Q?caf=E9.bin?="
Content-Transfer-Encoding: base64

""" + b64(cafe).encode() + b"""
--mix--
""")

# 4. 8-bit body and headers, nothing says which charset
write("eightbit-utf8.eml", "From: m\u00fcller@example.de\nSubject: Gr\u00fc\u00dfe\n\nGr\u00fc\u00dfe aus M\u00fcnchen \u2014 ok\n")
write("eightbit-latin1.eml", b"From: owner@example.fr\nSubject: Caf\xe9 \x80 5\n\nCaf\xe9 cr\xe8me \x80 5\n")

# 5. malformed
write("no-closing-boundary.eml", """From: a@example.com
Subject: no closing boundary
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="open"

--open
Content-Type: text/plain

first part
--open
Content-Type: application/octet-stream; name="tail.bin"
Content-Transfer-Encoding: base64

""" + b64(b"tail data").rstrip("\n") + "\n")
report("no-closing tail.bin", b"tail data")

good = b"Hello, World! 0123456789"
enc = base64.b64encode(good).decode()
broken = enc[:8] + "*!" + enc[8:16] + "\n" + enc[16:] + "@@\n"
write("bad-base64.eml", """From: a@example.com
Subject: bad base64
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=bb

--bb
Content-Type: text/plain; charset=x-no-such-charset

body in an unknown charset: caf\u00e9
--bb
Content-Type: application/octet-stream
Content-Disposition: attachment; filename=broken.bin
Content-Transfer-Encoding: base64

""" + broken + """--bb
Content-Type: application/octet-stream
Content-Disposition: attachment; filename=truncated.bin
Content-Transfer-Encoding: base64

SGVsbG8gV29y
--bb--
""")
report("bad-base64 broken.bin", good)
report("bad-base64 truncated.bin", b"Hello Wor")

write("header-no-colon.eml", """From: a@example.com
Subject: before
This line has no colon
To: b@example.com

body
""")

write("no-boundary-param.eml", """From: a@example.com
Subject: multipart without boundary
MIME-Version: 1.0
Content-Type: multipart/mixed

just text
""")

# 6. nested message/rfc822
inner = """From: Inner Sender <inner@example.com>
Subject: Inner report: Q3/Q4
Message-ID: <inner-1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

inner body
"""
inner2 = """From: nosubject@example.com
Content-Type: text/plain

no subject here
"""
report("nested inner", inner.encode())
report("nested inner2", inner2.encode())
write("nested-rfc822.eml", """From: fwd@example.com
To: x@example.com
Subject: Fwd: report
Message-ID: <outer-1@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

See the attached messages.
--outer
Content-Type: message/rfc822

""" + inner + """--outer
Content-Type: message/rfc822
Content-Disposition: attachment

""" + inner2 + """--outer--
""")

# 7. nesting deeper than the cap (40 > 32), an image at the bottom
def deep(levels):
    out = ["From: a@example.com\nSubject: deep %d\nMIME-Version: 1.0\n"
           "Content-Type: multipart/mixed; boundary=\"b0\"\n\n" % levels]
    for i in range(1, levels):
        out.append("--b%d\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n" % (i - 1, i))
    out.append("--b%d\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGODlh\n"
               % (levels - 1))
    for i in range(levels - 1, -1, -1):
        out.append("--b%d--\n" % i)
    return "".join(out)
write("deep-40.eml", deep(40))
write("deep-32.eml", deep(32))
report("deep gif", base64.b64decode("R0lGODlh"))

# 8. inline image with Content-ID, html only (multipart/related)
png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8 + b"IHDR"
report("related logo", png)
write("related.eml", """From: news@example.com
Subject: Newsletter
MIME-Version: 1.0
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

<html><head><title>News</title><style>p {color: red}</style></head>
<body><h1>Caf=E9 &amp; more</h1><p>Line one<br>Line&nbsp;two &#8364;5 &lt;b&gt;</p>
<script>var x = "<p>no</p>";</script><!-- hidden --><div>a   b
c</div><img src=3D"cid:logo@example.com"></body></html>
--rel
Content-Type: image/png
Content-ID: <logo@example.com>
Content-Disposition: inline
Content-Transfer-Encoding: base64

""" + b64(png) + """--rel--
""")

# 9. empty message, headers only
write("empty.eml", b"")
write("headers-only.eml", "From: a@example.com\nSubject: only headers\n")
