#!/usr/bin/env python3
"""Gmail API v1 emulator for the Lattice mail ingest tests and benchmark.

Standard library only (Python >= 3.11). One process, in-memory state, HTTPS.
See tests/gmail-emulator/README.md for what is emulated, the reference pages
it follows and where it differs from the real service.

Layout of this file:
  * constants and Google-shaped error bodies
  * message generation (deterministic, not stored: built on demand)
  * Mailbox: messages, sorted index, history records with retention
  * Emulator: users, OAuth tokens, quotas, concurrency, faults, counters,
    the API router (also used for batch inner calls) and the control API
  * HTTP layer: ThreadingHTTPServer, TLS handshake in the connection thread
"""

import argparse
import base64
import bisect
import email
import email.policy
import email.utils
import gc
import gzip
import hashlib
import http.client
import http.server
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

try:
    from zoneinfo import ZoneInfo
    _PT = ZoneInfo("America/Los_Angeles")
except Exception:  # pragma: no cover - no tz database
    _PT = timezone(timedelta(hours=-8))

SCOPE_DEFAULT = "https://www.googleapis.com/auth/gmail.readonly"
MAX_BODY = 64 * 1024 * 1024
SYSTEM_LABELS = [
    "INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT",
    "CHAT", "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES", "CATEGORY_FORUMS",
]

# Per-method quota units, from https://developers.google.com/gmail/api/reference/quota
QUOTA_COST = {
    "gmail.users.getProfile": 1,
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.messages.attachments.get": 5,
    "gmail.users.history.list": 2,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.get": 1,
    "gmail.users.labels.create": 5,
    "gmail.users.messages.trash": 5,
    "gmail.users.messages.untrash": 5,
    "gmail.users.messages.modify": 5,
    "gmail.users.messages.batchModify": 50,
    "gmail.users.messages.delete": 10,
    "gmail.users.watch": 100,
    "gmail.users.stop": 50,
}

# The write methods and the OAuth scopes that allow them (each method's reference page,
# "Authorization scopes"); the read methods accept any scope the token has.
SCOPE_FULL = "https://mail.google.com/"
SCOPE_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
SCOPE_LABELS = "https://www.googleapis.com/auth/gmail.labels"
WRITE_SCOPES = {
    "gmail.users.messages.trash": (SCOPE_FULL, SCOPE_MODIFY),
    "gmail.users.messages.untrash": (SCOPE_FULL, SCOPE_MODIFY),
    "gmail.users.messages.modify": (SCOPE_FULL, SCOPE_MODIFY),
    "gmail.users.messages.batchModify": (SCOPE_FULL, SCOPE_MODIFY),
    "gmail.users.messages.delete": (SCOPE_FULL,),
    "gmail.users.labels.create": (SCOPE_FULL, SCOPE_MODIFY, SCOPE_LABELS),
}
MAX_MODIFY_LABELS = 100      # messages.modify: "up to 100 labels with each update"
MAX_BATCH_MODIFY_IDS = 1000  # messages.batchModify: "a limit of 1000 ids per request"

AUTH_HELP = ("Expected OAuth 2 access token, login cookie or other valid authentication "
             "credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")

STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

HTML_404 = ("<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
            "  <title>Error 404 (Not Found)!!1</title>\n"
            "  <p><b>404.</b> <ins>That\u2019s an error.</ins>\n"
            "  <p>The requested URL <code>{path}</code> was not found on this server."
            "  <ins>That\u2019s all we know.</ins>\n")


# What this emulator supports beyond its first version (GET /healthz lists them, so a
# test can tell an emulator started from older code).
FEATURES = ("fault_user", "user_config", "token_requests_by_client", "modify", "push",
            "quota_minute")


class ApiError(Exception):
    """A Google JSON error (https://developers.google.com/gmail/api/guides/handle-errors)."""

    def __init__(self, code, message, reason, domain="global", status=None,
                 location=None, location_type=None, err_message=None, headers=None):
        super().__init__(message)
        err = {"message": err_message or message, "domain": domain, "reason": reason}
        if location:
            err["location"] = location
            err["locationType"] = location_type
        self.code = code
        self.headers = headers or []
        self.body = {"error": {"code": code, "message": message, "errors": [err],
                               "status": status or STATUS_NAMES.get(code, "UNKNOWN")}}


def err_not_found():
    return ApiError(404, "Requested entity was not found.", "notFound")


def err_invalid(message, location=None):
    return ApiError(400, message, "invalidArgument", location=location,
                    location_type="parameter" if location else None)


def err_bad_request(message):
    return ApiError(400, message, "badRequest")


def err_backend(code=500):
    if code == 503:
        return ApiError(503, "The service is currently unavailable.", "backendError")
    if code == 500:
        return ApiError(500, "Backend Error", "backendError")
    return ApiError(code, "Backend Error", "backendError")


def b64url(data):
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64url_decode(text):
    text = text.strip()
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + pad)


def rfc3339_ms(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        "%03dZ" % int((t % 1) * 1000)


# ---------------------------------------------------------------------------
# Deterministic message generation
# ---------------------------------------------------------------------------

_WORDS = ("lattice mail ingest kafka worker scheduler message thread label history "
          "quota token refresh attachment invoice meeting report quarterly review budget "
          "project deadline follow up please find attached regards thanks team schedule "
          "update status notes agenda draft final version customer order shipment "
          "the a of to and in for on with is this that it be as at by from").split()


def _build_blobs():
    rng = random.Random(20240501)
    lines, cur, n = [], [], 0
    total = 0
    while total < 1_200_000:
        w = _WORDS[rng.randrange(len(_WORDS))]
        cur.append(w)
        n += len(w) + 1
        if n > 70:
            line = " ".join(cur)
            lines.append(line)
            total += len(line) + 2
            cur, n = [], 0
    text = ("\r\n".join(lines) + "\r\n").encode("ascii")
    binary = random.Random(7).randbytes(2 * 1024 * 1024)
    return text, binary


TEXT_BLOB, BIN_BLOB = _build_blobs()


def _slice_repeat(blob, off, n):
    if n <= 0:
        return b""
    off %= len(blob)
    out = bytearray()
    while len(out) < n:
        take = min(n - len(out), len(blob) - off)
        out += blob[off:off + take]
        off = 0
    return bytes(out)


def _text_start(off):
    return TEXT_BLOB.find(b"\r\n", off % (len(TEXT_BLOB) - 200)) + 2


def _text_body(off, n):
    """n bytes of text lines, always ending with CRLF."""
    n = max(n, 2)
    body = _slice_repeat(TEXT_BLOB, _text_start(off), n)
    return body[:-2] + b"\r\n"


def _b64_lines_len(n):
    """len(base64.encodebytes(n bytes)) with CRLF line ends."""
    if n == 0:
        return 0
    chars = 4 * ((n + 2) // 3)
    return chars + 2 * ((chars + 75) // 76)


def _gen_layout(spec):
    """The parts of a generated message except the bulky bodies:
    (hdr, text_hdr, text_len, boundary, off). text_hdr is b"" for single-part."""
    (index, size, n_att, att_size, seed, to_addr, date_ms, subject) = spec
    date_s = email.utils.format_datetime(datetime.fromtimestamp(date_ms / 1000, timezone.utc))
    sender = index % 97
    hdr = ("From: Sender %d <sender%d@example.net>\r\nTo: %s\r\nSubject: %s\r\n"
           "Date: %s\r\nMessage-ID: <gen-%d-%d@emulator.invalid>\r\nMIME-Version: 1.0\r\n"
           % (sender, sender, to_addr, subject, date_s, seed, index)).encode("ascii")
    off = seed * 7919 + index * 104729
    if n_att <= 0:
        hdr += b"Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        return hdr, b"", max(2, size - len(hdr)), None, off
    boundary = b"gen-boundary-%d-%d" % (seed, index)
    hdr += b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
    text_hdr = (b"--" + boundary + b"\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                b"Content-Transfer-Encoding: 7bit\r\n\r\n")
    used = len(hdr) + len(text_hdr) + len(boundary) + 6
    for j in range(n_att):
        used += len(_att_head(boundary, index, j)) + _b64_lines_len(att_size)
    return hdr, text_hdr, max(64, size - used), boundary, off


def _att_head(boundary, index, j):
    name = b"file-%d-%d.bin" % (index, j)
    return (b"--" + boundary + b"\r\nContent-Type: application/octet-stream; name=\"" + name +
            b"\"\r\nContent-Disposition: attachment; filename=\"" + name +
            b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")


def generated_size(spec):
    hdr, text_hdr, text_len, boundary, off = _gen_layout(spec)
    if boundary is None:
        return len(hdr) + text_len
    return len(hdr) + len(text_hdr) + text_len + sum(
        len(_att_head(boundary, spec[0], j)) + _b64_lines_len(spec[3])
        for j in range(spec[2])) + len(boundary) + 6


def gen_snippet(spec):
    hdr, text_hdr, text_len, boundary, off = _gen_layout(spec)
    start = _text_start(off)
    return " ".join(_slice_repeat(TEXT_BLOB, start, min(400, text_len)).decode(
        "ascii").split())[:200]


def generate_raw(spec):
    """Build the RFC 822 bytes of a generated message from its spec tuple."""
    hdr, text_hdr, text_len, boundary, off = _gen_layout(spec)
    text = _text_body(off, text_len)
    if boundary is None:
        return hdr + text
    index, att_size = spec[0], spec[3]
    parts = [hdr, text_hdr, text]
    for j in range(spec[2]):
        data = _slice_repeat(BIN_BLOB, off + j * 4099, att_size)
        parts.append(_att_head(boundary, index, j))
        parts.append(base64.encodebytes(data).replace(b"\n", b"\r\n"))
    parts.append(b"--" + boundary + b"--\r\n")
    return b"".join(parts)


# ---------------------------------------------------------------------------
# MIME -> Gmail MessagePart
# ---------------------------------------------------------------------------

def _att_id(msg_id, part_id):
    # Opaque, URL-safe and long like Gmail's; decodable by the emulator only.
    tag = hashlib.sha256(("%s/%s" % (msg_id, part_id)).encode()).digest()[:24]
    return "ANGjdJ" + b64url(("%s/%s/" % (msg_id, part_id)).encode() + tag).rstrip("=")


def _decode_att_id(att_id):
    if not att_id.startswith("ANGjdJ"):
        return None
    try:
        raw = b64url_decode(att_id[6:])
        msg_id, part_id, _ = raw.split(b"/", 2)
        return msg_id.decode(), part_id.decode()
    except Exception:
        return None


def _headers_list(part):
    return [{"name": k, "value": str(v)} for k, v in part.items()]


def build_payload(msg_id, raw, with_body=True, want_headers=None):
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)

    def walk(part, part_id):
        ctype = part.get_content_type()
        headers = _headers_list(part)
        filename = part.get_filename() or ""
        node = {"partId": part_id, "mimeType": ctype, "filename": filename, "headers": headers}
        if part.is_multipart():
            node["body"] = {"size": 0}
            subs = part.get_payload()
            node["parts"] = [walk(p, ("%s.%d" % (part_id, i)) if part_id else str(i))
                             for i, p in enumerate(subs)]
        else:
            data = part.get_payload(decode=True) or b""
            if filename:
                node["body"] = {"attachmentId": _att_id(msg_id, part_id), "size": len(data)}
            elif len(data):
                node["body"] = {"size": len(data), "data": b64url(data)}
            else:
                node["body"] = {"size": 0}
        return node

    if not with_body:
        headers = _headers_list(parsed)
        if want_headers:
            lw = {h.lower() for h in want_headers}
            headers = [h for h in headers if h["name"].lower() in lw]
        return {"partId": "", "mimeType": parsed.get_content_type(), "filename": "",
                "headers": headers, "body": {"size": 0}}
    return walk(parsed, "")


def find_part_data(raw, part_id):
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    node = parsed
    if part_id:
        for idx in part_id.split("."):
            if not node.is_multipart():
                return None
            subs = node.get_payload()
            i = int(idx)
            if i >= len(subs):
                return None
            node = subs[i]
    if node.is_multipart():
        return None
    return node.get_payload(decode=True) or b""


def make_snippet(raw):
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        for part in parsed.walk():
            if part.get_content_type() == "text/plain" and not part.get_filename():
                data = part.get_payload(decode=True) or b""
                text = data.decode(part.get_content_charset() or "utf-8", "replace")
                return " ".join(text.split())[:200]
        for part in parsed.walk():
            if part.get_content_type() == "text/html":
                data = part.get_payload(decode=True) or b""
                text = re.sub(r"<[^>]*>", " ", data.decode("utf-8", "replace"))
                return " ".join(text.split())[:200]
    except Exception:
        pass
    return ""


# ---------------------------------------------------------------------------
# fields= partial responses (subset of https://developers.google.com/gmail/api/guides/performance)
# ---------------------------------------------------------------------------

def parse_fields(text):
    pos = 0

    def parse_list():
        nonlocal pos
        tree = {}
        while pos < len(text):
            m = re.match(r"\s*([A-Za-z0-9_*]+(?:/[A-Za-z0-9_*]+)*)\s*", text[pos:])
            if not m:
                raise ValueError("bad fields")
            path = m.group(1).split("/")
            pos += m.end()
            sub = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = parse_list()
                if pos >= len(text) or text[pos] != ")":
                    raise ValueError("bad fields")
                pos += 1
            node = tree
            for name in path[:-1]:
                nxt = node.get(name)
                if nxt is None or nxt is True:
                    nxt = {} if nxt is None else True
                    node[name] = nxt
                if nxt is True:
                    break
                node = nxt
            else:
                node[path[-1]] = sub if sub is not None else True
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            break
        return tree

    tree = parse_list()
    if pos != len(text):
        raise ValueError("bad fields")
    return tree


def apply_fields(obj, tree):
    if tree is True:
        return obj
    if isinstance(obj, list):
        return [apply_fields(o, tree) for o in obj]
    if not isinstance(obj, dict):
        return obj
    if "*" in tree:
        return obj
    return {k: apply_fields(obj[k], sub) for k, sub in tree.items() if k in obj}


# ---------------------------------------------------------------------------
# Mailbox
# ---------------------------------------------------------------------------

H_ADD, H_DEL, H_LADD, H_LREM = "messageAdded", "messageDeleted", "labelAdded", "labelRemoved"


class Message:
    __slots__ = ("id", "thread_id", "internal_ms", "labels", "history_id", "seq", "raw",
                 "spec", "snippet", "size")

    def raw_bytes(self):
        return self.raw if self.raw is not None else generate_raw(self.spec)


class Mailbox:
    def __init__(self, addr, gap, rng_seed=None):
        self.email = addr
        self.lock = threading.RLock()
        self.msgs = {}
        self.order = []          # sorted list of (-internal_ms, -seq, id): newest first
        self.threads = {}        # threadId -> count
        self.seq = 0
        h = int(hashlib.sha256(addr.encode()).hexdigest()[:8], 16)
        self.rng = random.Random(h if rng_seed is None else rng_seed)
        self.gap = max(1, gap)
        self.history_id = 100000 + h % 900000
        self.min_valid_start = self.history_id
        self.hist_ids = []       # parallel lists, trimmed from the front via hist_base
        self.hist_recs = []
        self.hist_base = 0
        self.user_labels = {}    # id -> name
        self.label_props = {}    # id -> visibility/color fields given at creation
        self.label_seq = 0
        self.overrides = {}      # Config.USER_FIELDS this user sets for itself
        self.on_change = None    # push notifications: fn(mailbox, historyId, labels, changed)

    # --- history ------------------------------------------------------------
    def _bump(self):
        self.history_id += 1 + (self.rng.randrange(self.gap) if self.gap > 1 else 0)
        return self.history_id

    def _record(self, kind, m, changed=()):
        hid = self._bump()
        self.hist_ids.append(hid)
        self.hist_recs.append((hid, time.time(), kind, m.id, m.thread_id, tuple(m.labels),
                               tuple(changed)))
        m.history_id = hid
        if self.on_change:
            self.on_change(self, hid, m.labels, changed)
        return hid

    def trim(self, keep_records, keep_seconds):
        n = len(self.hist_ids) - self.hist_base
        drop_to = self.hist_base
        if keep_records and n > keep_records:
            drop_to = len(self.hist_ids) - keep_records
        if keep_seconds:
            limit = time.time() - keep_seconds
            while drop_to < len(self.hist_recs) and self.hist_recs[drop_to][1] < limit:
                drop_to += 1
        if drop_to > self.hist_base:
            self.min_valid_start = self.hist_ids[drop_to - 1]
            self.hist_base = drop_to
            if self.hist_base > 4096 and self.hist_base * 2 > len(self.hist_ids):
                del self.hist_ids[:self.hist_base]
                del self.hist_recs[:self.hist_base]
                self.hist_base = 0

    def expire_all_history(self):
        self.min_valid_start = self.history_id
        self.hist_ids, self.hist_recs, self.hist_base = [], [], 0

    # --- labels -------------------------------------------------------------
    def label_exists(self, lab):
        return lab in SYSTEM_LABELS or lab in self.user_labels

    def create_label(self, name, props=None, label_id=None):
        """A user label (id Label_N unless given); ValueError on a name that exists
        (case-insensitive, system names included) or an id in use."""
        name = (name or "").strip()
        if not name:
            raise ValueError("label name required")
        low = name.lower()
        if any(low == n.lower() for n in list(self.user_labels.values()) + SYSTEM_LABELS):
            raise ValueError("label name exists or conflicts: %s" % name)
        if label_id is None:
            while True:
                self.label_seq += 1
                label_id = "Label_%d" % self.label_seq
                if label_id not in self.user_labels:
                    break
        elif self.label_exists(label_id):
            raise ValueError("label id in use: %s" % label_id)
        self.user_labels[label_id] = name
        if props:
            self.label_props[label_id] = dict(props)
        return self.label_resource(label_id)

    def label_resource(self, lab):
        if lab in SYSTEM_LABELS:
            return {"id": lab, "name": lab, "type": "system"}
        res = {"id": lab, "name": self.user_labels[lab]}
        res.update(self.label_props.get(lab, {}))
        res["type"] = "user"
        return res

    # --- messages -----------------------------------------------------------
    def _new_id(self, internal_ms):
        self.seq += 1
        mid = "%x" % ((internal_ms << 20) | (self.seq & 0xFFFFF))
        while mid in self.msgs:
            self.seq += 1
            mid = "%x" % ((internal_ms << 20) | (self.seq & 0xFFFFF))
        return mid

    def add(self, internal_ms, labels, raw=None, spec=None, thread_id=None, snippet=None,
            size=None):
        m = Message()
        m.internal_ms = int(internal_ms)
        m.id = self._new_id(m.internal_ms)
        m.seq = self.seq
        m.thread_id = thread_id or m.id
        m.labels = list(dict.fromkeys(labels))
        for lab in m.labels:
            if lab not in SYSTEM_LABELS and lab not in self.user_labels:
                self.user_labels[lab] = lab
        m.raw = raw
        m.spec = spec
        m.snippet = snippet if snippet is not None else make_snippet(raw if raw is not None
                                                                     else generate_raw(spec))
        m.size = size if size is not None else len(m.raw_bytes())
        self.msgs[m.id] = m
        bisect.insort(self.order, (-m.internal_ms, -m.seq, m.id))
        self.threads[m.thread_id] = self.threads.get(m.thread_id, 0) + 1
        self._record(H_ADD, m)
        return m

    def delete(self, mid):
        m = self.msgs.pop(mid, None)
        if m is None:
            return None
        i = bisect.bisect_left(self.order, (-m.internal_ms, -m.seq, m.id))
        del self.order[i]
        c = self.threads.get(m.thread_id, 0) - 1
        if c <= 0:
            self.threads.pop(m.thread_id, None)
        else:
            self.threads[m.thread_id] = c
        self._record(H_DEL, m)
        return m

    def relabel(self, mid, add, remove):
        m = self.msgs.get(mid)
        if m is None:
            return None
        added = [lab for lab in dict.fromkeys(add) if lab not in m.labels]
        removed = [lab for lab in dict.fromkeys(remove) if lab in m.labels and lab not in added]
        if added:
            m.labels.extend(added)
            for lab in added:
                if lab not in SYSTEM_LABELS and lab not in self.user_labels:
                    self.user_labels[lab] = lab
            self._record(H_LADD, m, added)
        if removed:
            m.labels = [lab for lab in m.labels if lab not in removed]
            self._record(H_LREM, m, removed)
        return m


# ---------------------------------------------------------------------------
# Query parsing for messages.list q=
# ---------------------------------------------------------------------------

_DATE_RE = re.compile(r"^(\d{4})[/-](\d{1,2})[/-](\d{1,2})$")
_REL_RE = re.compile(r"^(\d+)([dmy])$")


def _q_time_ms(value):
    if value.isdigit():
        return int(value) * 1000
    m = _DATE_RE.match(value)
    if m:
        y, mo, d = (int(x) for x in m.groups())
        try:
            return int(datetime(y, mo, d, tzinfo=_PT).timestamp() * 1000)
        except ValueError:
            return None
    return None


def parse_query(q, now_ms):
    """Returns (after_ms_inclusive, before_ms_exclusive, include_labels, exclude_labels,
    anywhere)."""
    after, before = None, None
    inc, exc = [], []
    anywhere = False
    for tok in q.split():
        neg = tok.startswith("-")
        t = tok[1:] if neg else tok
        if ":" not in t:
            raise err_bad_request("Emulator: free-text search is not supported (term %r)" % tok)
        key, _, val = t.partition(":")
        key = key.lower()
        if key in ("after", "before", "newer", "older") and not neg:
            ms = _q_time_ms(val)
            if ms is None:
                raise err_bad_request("Emulator: invalid date in query term %r" % tok)
            if key in ("after", "newer"):
                after = ms if after is None else max(after, ms)
            else:
                before = ms if before is None else min(before, ms)
        elif key in ("newer_than", "older_than") and not neg:
            m = _REL_RE.match(val.lower())
            if not m:
                raise err_bad_request("Emulator: invalid relative date %r" % tok)
            n, unit = int(m.group(1)), m.group(2)
            delta = n * {"d": 86400, "m": 30 * 86400, "y": 365 * 86400}[unit] * 1000
            if key == "newer_than":
                after = now_ms - delta if after is None else max(after, now_ms - delta)
            else:
                before = now_ms - delta if before is None else min(before, now_ms - delta)
        elif key in ("in", "label", "is"):
            v = val.upper().replace("-", "_")
            if key == "in" and v == "ANYWHERE":
                anywhere = True
                continue
            if key == "is" and v == "READ":
                (inc if neg else exc).append("UNREAD")
                continue
            label = v if (v in SYSTEM_LABELS or key != "label") else val
            if key == "label" and v in SYSTEM_LABELS:
                label = v
            (exc if neg else inc).append(label)
        elif key == "category":
            (exc if neg else inc).append("CATEGORY_" + val.upper())
        else:
            raise err_bad_request("Emulator: unsupported query term %r" % tok)
    return after, before, inc, exc, anywhere


# ---------------------------------------------------------------------------
# Emulator state
# ---------------------------------------------------------------------------

class Config:
    FIELDS = {
        "latency_ms": float, "latency_jitter_ms": float, "quota_units_per_min": float,
        "quota_burst_s": float, "quota_mode": str, "retry_after": bool,
        "project_quota_units_per_min": float, "project_quota_burst_s": float,
        "concurrency_limit": int, "history_retention_records": int,
        "history_retention_s": float, "history_id_gap": int, "access_token_ttl_s": int,
        "gzip": bool, "max_batch": int, "log_requests": bool,
    }

    def __init__(self, **kw):
        self.latency_ms = 0.0
        self.latency_jitter_ms = 0.0
        # Google (2026): 6,000 units per user per minute for projects created since
        # 1 May 2026 (15,000 for older ones), 1,200,000 per project per minute
        self.quota_units_per_min = 6000.0
        self.quota_burst_s = 1.0
        self.quota_mode = "429"
        self.retry_after = False
        self.project_quota_units_per_min = 1200000.0
        self.project_quota_burst_s = 1.0
        self.concurrency_limit = 10
        self.history_retention_records = 0
        self.history_retention_s = 0.0
        self.history_id_gap = 5
        self.access_token_ttl_s = 3599
        self.gzip = True
        self.max_batch = 100
        self.log_requests = False
        self.update(kw)

    # what a user may override for itself (POST /users/{email}/config)
    USER_FIELDS = ("latency_ms", "latency_jitter_ms", "quota_units_per_min", "quota_burst_s",
                   "quota_mode", "retry_after", "concurrency_limit", "access_token_ttl_s")
    # what a project may override for itself (POST /projects/{id}/config)
    PROJECT_FIELDS = {"quota_units_per_min": "project_quota_units_per_min",
                      "quota_burst_s": "project_quota_burst_s", "quota_mode": "quota_mode"}

    @staticmethod
    def alias(k, v):
        """The older per-second form of the per-user quota, as per minute."""
        if k == "quota_units_per_s":
            return "quota_units_per_min", (None if v is None else float(v) * 60.0)
        return k, v

    @classmethod
    def coerce(cls, k, v):
        if k not in cls.FIELDS:
            raise ValueError("unknown config key %r" % k)
        typ = cls.FIELDS[k]
        if typ is bool and isinstance(v, str):
            v = v.lower() in ("1", "true", "yes", "on")
        v = typ(v)
        if k == "quota_mode" and v not in ("429", "403"):
            raise ValueError("quota_mode must be '429' or '403'")
        return v

    def update(self, kw):
        new = {}
        for k, v in kw.items():
            k, v = self.alias(k, v)
            new[k] = self.coerce(k, v)
        for k, v in new.items():
            setattr(self, k, v)

    def as_dict(self):
        d = {k: getattr(self, k) for k in self.FIELDS}
        d["quota_units_per_s"] = self.quota_units_per_min / 60.0
        return d


class Window:
    """One quota: units per minute, as a sliding window of sixty one-second slots
    (at most `per_min` units in any 60 s), and within it a token bucket refilled at
    per_min / 60 per second holding `burst_s` seconds of refill (how much of the
    minute may be spent at once; 60: all of it)."""
    __slots__ = ("tokens", "t", "slots", "sums")

    def __init__(self, cap):
        self.tokens = cap
        self.t = time.monotonic()
        self.slots = [0] * 60   # units charged in second s % 60
        self.sums = [-1] * 60   # which second that slot holds

    def used(self, sec):
        return sum(u for u, s in zip(self.slots, self.sums) if sec - 60 < s <= sec)

    def try_charge(self, per_min, burst_s, cost, now):
        """0 when charged, else seconds until it might succeed."""
        rate = per_min / 60.0
        cap = max(rate * burst_s, cost)
        if now > self.t:
            self.tokens = min(cap, self.tokens + (now - self.t) * rate)
            self.t = now
        sec = int(now)
        if self.tokens < cost:
            return (cost - self.tokens) / rate
        if self.used(sec) + cost > per_min:
            return 1.0
        self.tokens -= cost
        i = sec % 60
        if self.sums[i] != sec:
            self.sums[i], self.slots[i] = sec, 0
        self.slots[i] += cost
        return 0.0


class Response:
    __slots__ = ("status", "headers", "body", "obj", "action")

    def __init__(self, status=200, obj=None, body=b"", headers=None, action=None):
        self.status = status
        self.obj = obj
        self.body = body
        self.headers = headers or []
        self.action = action   # fault action for the HTTP layer


class Emulator:
    def __init__(self, config=None, log=None, push_key=None):
        self.cfg = config or Config()
        self.defaults = self.cfg.as_dict()
        self.log = log or (lambda msg: None)
        self.lock = threading.Lock()
        self.push = PushNotifier(self.log, push_key)
        self._reset_state()

    def _reset_state(self):
        self.users = {}            # email -> Mailbox
        self.clients = {}          # client_id -> secret
        self.refresh = {}          # refresh_token -> (email, client_id, scope)
        self.access = {}           # access_token -> [email, expiry, refresh_token, scope]
        self.buckets = {}          # email -> Window
        self.projects = {}         # project id -> {"client_ids": [...], "overrides": {...}}
        self.project_of_client = {}  # client_id -> project id (else the client id itself)
        self.pwindows = {}         # project id -> Window
        self.inflight = {}         # email -> int
        self.faults = []
        self.fault_seq = 0
        self._reset_counters()
        self.push.reset()

    def _reset_counters(self):
        self.c = {
            "http_requests": 0, "api_calls": 0, "by_method": {}, "by_status": {},
            "units_spent": 0, "units_by_user": {}, "units_by_project": {},
            "rate_limited": 0, "rate_limited_429": 0, "rate_limited_403": 0,
            "rate_limited_user": 0, "rate_limited_project": 0,
            "rate_limited_by_user": {}, "rate_limited_by_project": {},
            "concurrency_rejected": 0, "max_concurrency": 0,
            "max_concurrency_by_user": {}, "token_requests": 0, "token_requests_by_client": {}, "tokens_issued": 0,
            "token_errors": 0, "auth_errors": 0, "batch_requests": 0, "batch_calls": 0,
            "faults_injected": 0, "bytes_sent": 0, "inflight_total": 0,
        }
        self.started = time.time()

    # --- counters -----------------------------------------------------------
    def count(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def count_status(self, status):
        with self.lock:
            k = str(status)
            self.c["by_status"][k] = self.c["by_status"].get(k, 0) + 1

    def counters(self):
        with self.lock:
            out = json.loads(json.dumps(self.c))
        out["uptime_s"] = round(time.time() - self.started, 3)
        out["inflight"] = dict(self.inflight)
        return out

    # --- per-user configuration ------------------------------------------------
    def ucfg(self, addr, key):
        """A setting as it applies to user `addr` (its override, else the global one)."""
        mb = self.users.get(addr) if addr else None
        if mb is not None and key in mb.overrides:
            return mb.overrides[key]
        return getattr(self.cfg, key)

    @staticmethod
    def merge_overrides(old, spec):
        """old + spec (a null value drops one); ValueError on any bad key or value."""
        if not isinstance(spec, dict):
            raise ValueError("config must be an object")
        new = dict(old)
        for k, v in spec.items():
            k, v = Config.alias(k, v)
            if k not in Config.USER_FIELDS:
                raise ValueError("%r cannot be set per user (only %s)"
                                 % (k, ", ".join(Config.USER_FIELDS)))
            if v is None:
                new.pop(k, None)
            else:
                new[k] = Config.coerce(k, v)
        return new

    def set_overrides(self, addr, spec):
        mb = self.mailbox(addr)
        mb.overrides = self.merge_overrides(mb.overrides, spec)
        return self.user_config(addr)

    def user_config(self, addr):
        mb = self.mailbox(addr)
        return {"overrides": dict(mb.overrides),
                "effective": {k: self.ucfg(addr, k) for k in Config.USER_FIELDS}}

    # --- projects ---------------------------------------------------------------
    # A Google Cloud project owns OAuth clients; its per-minute quota is shared by every
    # user whose token came from one of them. A client id not given to a project is a
    # project of its own (named by the client id).
    def project_of(self, client_id):
        return self.project_of_client.get(client_id, client_id)

    def pcfg(self, project, key):
        """A project's setting (its override, else the global project one)."""
        ov = self.projects.get(project, {}).get("overrides", {})
        if key in ov:
            return ov[key]
        return getattr(self.cfg, Config.PROJECT_FIELDS[key]) if key != "quota_mode" else "403"

    def set_project(self, project, spec):
        """Create or change a project: {"client_ids": [...], "quota_units_per_min",
        "quota_burst_s", "quota_mode"} (a null value drops an override)."""
        if not isinstance(spec, dict) or not project:
            raise ValueError("project config must be an object")
        new = dict(self.projects.get(project, {}).get("overrides", {}))
        cids = spec.get("client_ids")
        if cids is not None and (not isinstance(cids, list)
                                 or not all(isinstance(c, str) for c in cids)):
            raise ValueError("client_ids must be a list of strings")
        for k, v in spec.items():
            if k == "client_ids":
                continue
            if k not in Config.PROJECT_FIELDS:
                raise ValueError("%r cannot be set per project (only client_ids, %s)"
                                 % (k, ", ".join(Config.PROJECT_FIELDS)))
            if v is None:
                new.pop(k, None)
            else:
                new[k] = Config.coerce(Config.PROJECT_FIELDS[k] if k != "quota_mode"
                                       else k, v)
        with self.lock:
            ent = self.projects.setdefault(project, {"client_ids": [], "overrides": {}})
            ent["overrides"] = new
            for c in cids or []:
                self.project_of_client[c] = project
                if c not in ent["client_ids"]:
                    ent["client_ids"].append(c)
            self.pwindows.pop(project, None)
        return self.project_config(project)

    def project_config(self, project):
        ent = self.projects.get(project, {"client_ids": [], "overrides": {}})
        with self.lock:
            w = self.pwindows.get(project)
            used = w.used(int(time.monotonic())) if w else 0
        return {"project": project, "client_ids": list(ent["client_ids"]),
                "overrides": dict(ent["overrides"]),
                "effective": {k: self.pcfg(project, k) for k in Config.PROJECT_FIELDS},
                "units_last_minute": used,
                "units_total": self.c["units_by_project"].get(project, 0)}

    @staticmethod
    def token_form(headers, body):
        """The token endpoint's parameters (form body, or JSON as Google also takes)."""
        ctype = headers.get("content-type", "")
        if "application/x-www-form-urlencoded" not in ctype and body:
            try:
                return {k: str(v) for k, v in json.loads(body).items()}
            except Exception:
                return {}
        return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                          keep_blank_values=True).items()}

    def request_user(self, path, headers, query, body=b""):
        """The mailbox a request acts for, or None: the owner of the bearer token (API,
        batch; expired tokens still tell), of the refresh token (/token), or the address
        in the API path."""
        if path == "/token":
            rt = self.token_form(headers, body).get("refresh_token")
            with self.lock:
                ent = self.refresh.get(rt) if rt else None
            return ent[0] if ent else None
        auth = headers.get("authorization", "")
        tok = auth[7:].strip() if auth[:7].lower() == "bearer " else \
            (query.get("access_token") or [None])[0]
        if tok:
            with self.lock:
                ent = self.access.get(tok)
            if ent:
                return ent[0]
        m = re.match(r"^/gmail/v1/users/([^/]+)/", path)
        if m:
            addr = urllib.parse.unquote(m.group(1))
            if addr != "me":
                return addr
        return None

    # --- faults -------------------------------------------------------------
    def add_fault(self, spec):
        kind = spec.get("kind", "status")
        if kind not in ("status", "reset", "truncate", "malformed", "delay"):
            raise ValueError("fault kind must be status|reset|truncate|malformed|delay")
        f = {"kind": kind, "count": int(spec.get("count", 1)),
             "status": int(spec.get("status", 503 if kind == "status" else 200)),
             "match": spec.get("match", ""), "delay_ms": float(spec.get("delay_ms", 0)),
             "in_batch": bool(spec.get("in_batch", False)), "user": spec.get("user") or ""}
        with self.lock:
            self.fault_seq += 1
            f["id"] = self.fault_seq
            self.faults.append(f)
        return f

    def take_fault(self, path, in_batch=False, user=None):
        """The next fault for a request to `path` acting for `user` (None: unknown; a
        fault with a "user" then never matches)."""
        if not self.faults:
            return None
        with self.lock:
            for f in self.faults:
                if in_batch != f["in_batch"]:
                    continue
                if f["match"] and f["match"] not in path:
                    continue
                if f["user"] and f["user"] != user:
                    continue
                f["count"] -= 1
                if f["count"] <= 0:
                    self.faults.remove(f)
                self.c["faults_injected"] += 1
                return dict(f)
        return None

    # --- users and tokens -----------------------------------------------------
    def create_user(self, spec):
        addr = spec.get("email")
        if not addr or "@" not in addr:
            raise ValueError("email required")
        client_id = spec.get("client_id", "emulator-client")
        secret = spec.get("client_secret", "emulator-secret")
        scope = spec.get("scope", SCOPE_DEFAULT)
        overrides = self.merge_overrides({}, spec.get("config") or {})
        tokens = list(spec.get("refresh_tokens", []))
        if spec.get("refresh_token"):
            tokens.append(spec["refresh_token"])
        with self.lock:
            if addr in self.users:
                self._drop_user_tokens(addr)
            mb = Mailbox(addr, self.cfg.history_id_gap, spec.get("seed"))
            mb.overrides = overrides
            mb.on_change = self.push.on_change
            for lab in spec.get("labels", []):
                mb.user_labels[lab["id"]] = lab.get("name", lab["id"])
            self.users[addr] = mb
            self.clients[client_id] = secret
            for t in tokens:
                self.refresh[t] = (addr, client_id, scope)
            self.buckets.pop(addr, None)
        gen = spec.get("generate")
        if gen:
            self.generate(addr, gen)
        return self.user_summary(addr)

    def _drop_user_tokens(self, addr):
        for t in [t for t, v in self.refresh.items() if v[0] == addr]:
            del self.refresh[t]
        for t in [t for t, v in self.access.items() if v[0] == addr]:
            del self.access[t]

    def delete_user(self, addr):
        with self.lock:
            if addr not in self.users:
                return False
            self._drop_user_tokens(addr)
            del self.users[addr]
            self.push.stop(addr)
            self.faults = [f for f in self.faults if f["user"] != addr]
            return True

    def mailbox(self, addr):
        mb = self.users.get(addr)
        if mb is None:
            raise KeyError(addr)
        return mb

    def user_summary(self, addr):
        mb = self.mailbox(addr)
        with mb.lock:
            return {"email": addr, "messagesTotal": len(mb.msgs), "threadsTotal": len(mb.threads),
                    "historyId": str(mb.history_id),
                    "oldestValidStartHistoryId": str(mb.min_valid_start),
                    "historyRecords": len(mb.hist_ids) - mb.hist_base}

    def revoke(self, refresh_token):
        with self.lock:
            if refresh_token not in self.refresh:
                return False
            del self.refresh[refresh_token]
            for t in [t for t, v in self.access.items() if v[2] == refresh_token]:
                del self.access[t]
            return True

    def expire_access(self, addr=None):
        with self.lock:
            n = 0
            for t, v in self.access.items():
                if addr is None or v[0] == addr:
                    v[1] = 0
                    n += 1
            return n

    def token_endpoint(self, headers, body):
        self.count("token_requests")
        form = self.token_form(headers, body)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                dec = base64.b64decode(auth[6:]).decode()
                cid, _, csec = dec.partition(":")
                client_id = urllib.parse.unquote(cid)
                secret = urllib.parse.unquote(csec)
            except Exception:
                pass

        if client_id:
            with self.lock:
                by = self.c["token_requests_by_client"]
                by[client_id] = by.get(client_id, 0) + 1

        def oauth_err(code, err, desc):
            self.count("token_errors")
            return Response(code, {"error": err, "error_description": desc})

        grant = form.get("grant_type")
        if not grant:
            return oauth_err(400, "invalid_request", "Missing required parameter: grant_type")
        if grant != "refresh_token":
            return oauth_err(400, "unsupported_grant_type", "Invalid grant_type: " + grant)
        if not client_id:
            return oauth_err(400, "invalid_request", "Could not determine client ID from request.")
        with self.lock:
            known = self.clients.get(client_id)
        if known is None:
            return oauth_err(401, "invalid_client", "The OAuth client was not found.")
        if secret != known:
            return oauth_err(401, "invalid_client", "Unauthorized")
        rt = form.get("refresh_token")
        if not rt:
            return oauth_err(400, "invalid_request", "Missing required parameter: refresh_token")
        with self.lock:
            ent = self.refresh.get(rt)
            if ent is None or ent[1] != client_id or ent[0] not in self.users:
                ent = None
            else:
                tok = "ya29.emu-" + secrets.token_urlsafe(48)
                ttl = self.ucfg(ent[0], "access_token_ttl_s")
                self.access[tok] = [ent[0], time.time() + ttl, rt, ent[2]]
                self.c["tokens_issued"] += 1
        if ent is None:
            return oauth_err(400, "invalid_grant", "Token has been expired or revoked.")
        return Response(200, {"access_token": tok, "expires_in": ttl, "scope": ent[2],
                              "token_type": "Bearer"})

    def authenticate(self, headers, query):
        """The address the access token acts for (or a 401 ApiError)."""
        return self._auth_entry(headers, query)[0]

    def _auth_entry(self, headers, query):
        """The access token's [email, expiry, refresh_token, scope] (or a 401 ApiError)."""
        auth = headers.get("authorization", "")
        tok = None
        if auth[:7].lower() == "bearer ":
            tok = auth[7:].strip()
        elif "access_token" in query:
            tok = query["access_token"][0]
        if not tok:
            self.count("auth_errors")
            raise ApiError(401, "Request is missing required authentication credential. " +
                           AUTH_HELP, "required", location="Authorization",
                           location_type="header", err_message="Login Required.",
                           headers=[("WWW-Authenticate",
                                     'Bearer realm="https://accounts.google.com/"')])
        with self.lock:
            ent = self.access.get(tok)
            ok = ent is not None and ent[1] > time.time()
        if not ok:
            self.count("auth_errors")
            raise ApiError(401, "Request had invalid authentication credentials. " + AUTH_HELP,
                           "authError", location="Authorization", location_type="header",
                           err_message="Invalid Credentials",
                           headers=[("WWW-Authenticate",
                                     'Bearer realm="https://accounts.google.com/", '
                                     'error="invalid_token"')])
        return ent

    @staticmethod
    def check_scope(name, granted):
        """403 insufficientPermissions when no scope of `granted` (space-separated) allows
        the write method `name`; read methods are not checked."""
        need = WRITE_SCOPES.get(name)
        if need is None or set(need) & set((granted or "").split()):
            return
        raise ApiError(403, "Request had insufficient authentication scopes.",
                       "insufficientPermissions", status="PERMISSION_DENIED",
                       headers=[("WWW-Authenticate",
                                 'Bearer realm="https://accounts.google.com/", '
                                 'error="insufficient_scope", scope="%s"' % " ".join(need))])

    # --- limits -------------------------------------------------------------
    def _acquire(self, addr):
        with self.lock:
            n = self.inflight.get(addr, 0) + 1
            lim = self.ucfg(addr, "concurrency_limit")
            if lim > 0 and n > lim:
                self.c["concurrency_rejected"] += 1
                self.c["rate_limited"] += 1
                return False
            self.inflight[addr] = n
            self.c["inflight_total"] += 1
            if self.c["inflight_total"] > self.c["max_concurrency"]:
                self.c["max_concurrency"] = self.c["inflight_total"]
            mc = self.c["max_concurrency_by_user"]
            if n > mc.get(addr, 0):
                mc[addr] = n
            return True

    def _release(self, addr):
        with self.lock:
            self.inflight[addr] -= 1
            self.c["inflight_total"] -= 1

    def _charge(self, addr, project, cost):
        """Per-user then per-project quota: None when charged, else the ApiError.
        Rejected calls are not charged."""
        now = time.monotonic()
        with self.lock:
            per_min = self.ucfg(addr, "quota_units_per_min")
            pper_min = self.pcfg(project, "quota_units_per_min")
            uw = pw = None
            if per_min > 0:
                uw = self.buckets.get(addr)
                if uw is None:
                    uw = self.buckets[addr] = Window(
                        max(per_min / 60.0 * self.ucfg(addr, "quota_burst_s"), cost))
                wait = uw.try_charge(per_min, self.ucfg(addr, "quota_burst_s"), cost, now)
                if wait > 0:
                    return self._quota_error(addr, project, wait, user=True)
            if pper_min > 0:
                pw = self.pwindows.get(project)
                if pw is None:
                    pw = self.pwindows[project] = Window(
                        max(pper_min / 60.0 * self.pcfg(project, "quota_burst_s"), cost))
                wait = pw.try_charge(pper_min, self.pcfg(project, "quota_burst_s"), cost, now)
                if wait > 0:
                    if uw is not None:  # give the user's units back: the call is refused
                        uw.tokens += cost
                        uw.slots[int(now) % 60] -= cost
                    return self._quota_error(addr, project, wait, user=False)
            self.c["units_spent"] += cost
            self.c["units_by_user"][addr] = self.c["units_by_user"].get(addr, 0) + cost
            self.c["units_by_project"][project] = \
                self.c["units_by_project"].get(project, 0) + cost
            return None

    def _quota_error(self, addr, project, wait, user):
        """Called with the lock held. Google's documented reasons: userRateLimitExceeded
        (the per-user limit), rateLimitExceeded (the project's). No Retry-After unless
        configured: Google does not document one, a client must not depend on it."""
        c = self.c
        c["rate_limited"] += 1
        who = "user" if user else "project"
        c["rate_limited_" + who] += 1
        key, name = ("rate_limited_by_user", addr) if user else \
            ("rate_limited_by_project", project)
        c[key][name] = c[key].get(name, 0) + 1
        mode = self.ucfg(addr, "quota_mode") if user else self.pcfg(project, "quota_mode")
        c["rate_limited_" + mode] += 1
        hdrs = [("Retry-After", str(max(1, math.ceil(wait))))] \
            if self.ucfg(addr, "retry_after") else []
        if not user:
            return ApiError(int(mode), "Rate Limit Exceeded", "rateLimitExceeded",
                            domain="usageLimits", headers=hdrs)
        if mode == "403":
            return ApiError(403, "User Rate Limit Exceeded", "userRateLimitExceeded",
                            domain="usageLimits", headers=hdrs)
        return ApiError(429, "User-rate limit exceeded.", "userRateLimitExceeded",
                        domain="usageLimits", headers=hdrs)

    def sleep_latency(self, addr=None):
        lat = self.ucfg(addr, "latency_ms")
        jitter = self.ucfg(addr, "latency_jitter_ms")
        if jitter:
            lat += random.uniform(0, jitter)
        if lat > 0:
            time.sleep(lat / 1000.0)

    # --- API router -----------------------------------------------------------
    _ROUTES = [
        (re.compile(r"^/gmail/v1/users/([^/]+)/profile$"), "gmail.users.getProfile"),
        (re.compile(r"^/gmail/v1/users/([^/]+)/messages$"), "gmail.users.messages.list"),
        (re.compile(r"^/gmail/v1/users/([^/]+)/messages/([^/]+)$"), "gmail.users.messages.get"),
        (re.compile(r"^/gmail/v1/users/([^/]+)/messages/([^/]+)/attachments/([^/]+)$"),
         "gmail.users.messages.attachments.get"),
        (re.compile(r"^/gmail/v1/users/([^/]+)/history$"), "gmail.users.history.list"),
        (re.compile(r"^/gmail/v1/users/([^/]+)/labels$"), "gmail.users.labels.list"),
        (re.compile(r"^/gmail/v1/users/([^/]+)/labels/([^/]+)$"), "gmail.users.labels.get"),
    ]

    _WRITE_ROUTES = [
        ("POST", re.compile(r"^/gmail/v1/users/([^/]+)/messages/batchModify$"),
         "gmail.users.messages.batchModify"),
        ("POST", re.compile(r"^/gmail/v1/users/([^/]+)/messages/([^/]+)/trash$"),
         "gmail.users.messages.trash"),
        ("POST", re.compile(r"^/gmail/v1/users/([^/]+)/messages/([^/]+)/untrash$"),
         "gmail.users.messages.untrash"),
        ("POST", re.compile(r"^/gmail/v1/users/([^/]+)/messages/([^/]+)/modify$"),
         "gmail.users.messages.modify"),
        ("DELETE", re.compile(r"^/gmail/v1/users/([^/]+)/messages/([^/]+)$"),
         "gmail.users.messages.delete"),
        ("POST", re.compile(r"^/gmail/v1/users/([^/]+)/labels$"), "gmail.users.labels.create"),
        ("POST", re.compile(r"^/gmail/v1/users/([^/]+)/watch$"), "gmail.users.watch"),
        ("POST", re.compile(r"^/gmail/v1/users/([^/]+)/stop$"), "gmail.users.stop"),
    ]

    def route(self, method, path):
        routes = [(rx, name) for m, rx, name in self._WRITE_ROUTES if m == method] \
            if method != "GET" else self._ROUTES
        for rx, name in routes:
            m = rx.match(path)
            if m:
                return name, [urllib.parse.unquote(g) for g in m.groups()]
        return None, None

    def api_call(self, method, path, query, headers, in_batch=False, sleep=True, body=b""):
        """One Gmail API call (top level or batch part). Returns a Response."""
        name, args = self.route(method, path)
        if name is None:
            return Response(404, body=HTML_404.format(path=path).encode(),
                            headers=[("Content-Type", "text/html; charset=UTF-8")])
        self.count("api_calls")
        with self.lock:
            self.c["by_method"][name] = self.c["by_method"].get(name, 0) + 1
        if in_batch:
            f = self.take_fault(path, in_batch=True,
                                user=self.request_user(path, headers, query))
            if f:
                raise err_backend(f["status"])
        ent = self._auth_entry(headers, query)
        addr = ent[0]
        uid = args[0]
        if uid != "me" and uid != addr:
            raise ApiError(403, "Delegation denied for " + addr, "forbidden")
        self.check_scope(name, ent[3])
        req = None
        if name in self._BODY_METHODS:
            req = self._json_body(body)
        if not self._acquire(addr):
            raise ApiError(429, "Too many concurrent requests for user", "rateLimitExceeded",
                           domain="usageLimits",
                           headers=[("Retry-After", "1")] if self.ucfg(addr, "retry_after")
                           else [])
        try:
            with self.lock:
                rt = self.refresh.get(ent[2])
            qerr = self._charge(addr, self.project_of(rt[1] if rt else ""), QUOTA_COST[name])
            if qerr is not None:
                raise qerr
            if sleep:
                self.sleep_latency(addr)
            mb = self.users.get(addr)
            if mb is None:
                raise err_not_found()
            handler = getattr(self, "_api_" + name.split(".", 2)[2].replace(".", "_"))
            if req is not None:
                obj = handler(mb, args[1:], query, req)
            else:
                obj = handler(mb, args[1:], query)
        finally:
            self._release(addr)
        if obj is None:  # a method whose answer has no body (delete, batchModify)
            return Response(204)
        fields = query.get("fields")
        if fields:
            try:
                obj = apply_fields(obj, parse_fields(fields[0]))
            except ValueError:
                raise err_invalid("Invalid field selection " + fields[0], location="fields")
        return Response(200, obj)

    _BODY_METHODS = ("gmail.users.messages.modify", "gmail.users.messages.batchModify",
                     "gmail.users.labels.create", "gmail.users.watch")

    # users.watch / users.stop (push notifications: PushNotifier)
    def _api_watch(self, mb, args, query, req):
        return self.push.watch(mb, req)

    def _api_stop(self, mb, args, query):
        self.push.stop(mb.email)
        return None

    @staticmethod
    def _json_body(body):
        """The JSON object of a write method's request body ({} when empty)."""
        if not body or not body.strip():
            return {}
        try:
            obj = json.loads(body)
        except ValueError:
            raise ApiError(400, "Invalid JSON payload received.", "parseError")
        if not isinstance(obj, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.",
                           "parseError")
        return obj

    @staticmethod
    def _id_list(req, field, limit=None):
        v = req.get(field, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise err_invalid("Invalid value at '%s': expected a list of strings" % field,
                              location=field)
        if limit is not None and len(v) > limit:
            raise err_invalid("Too many values in '%s': %d (limit %d)" % (field, len(v), limit),
                              location=field)
        return v

    @staticmethod
    def _check_labels(mb, labels):
        for lab in labels:
            if not mb.label_exists(lab):
                raise err_invalid("Invalid label: " + lab)

    @staticmethod
    def _min_message(m):
        res = {"id": m.id, "threadId": m.thread_id}
        if m.labels:
            res["labelIds"] = list(m.labels)
        return res

    def _api_messages_trash(self, mb, args, query):
        with mb.lock:
            m = self._get_msg(mb, args[0])
            mb.relabel(m.id, ["TRASH"], [])
            return self._min_message(m)

    def _api_messages_untrash(self, mb, args, query):
        with mb.lock:
            m = self._get_msg(mb, args[0])
            mb.relabel(m.id, [], ["TRASH"])
            return self._min_message(m)

    def _api_messages_delete(self, mb, args, query):
        with mb.lock:
            m = self._get_msg(mb, args[0])
            mb.delete(m.id)
        return None

    def _api_messages_modify(self, mb, args, query, req):
        add = self._id_list(req, "addLabelIds", MAX_MODIFY_LABELS)
        remove = self._id_list(req, "removeLabelIds", MAX_MODIFY_LABELS)
        with mb.lock:
            m = self._get_msg(mb, args[0])
            self._check_labels(mb, add + remove)
            mb.relabel(m.id, add, remove)
            return self._min_message(m)

    def _api_messages_batchModify(self, mb, args, query, req):
        ids = self._id_list(req, "ids", MAX_BATCH_MODIFY_IDS)
        add = self._id_list(req, "addLabelIds")
        remove = self._id_list(req, "removeLabelIds")
        for mid in ids:
            if not re.fullmatch(r"[0-9a-fA-F]{1,32}", mid):
                raise err_invalid("Invalid id value", location="ids")
        with mb.lock:
            self._check_labels(mb, add + remove)
            for mid in ids:
                mb.relabel(mid, add, remove)  # an unknown id changes nothing
        return None

    def _api_labels_create(self, mb, args, query, req):
        name = req.get("name")
        if not isinstance(name, str) or not name.strip():
            raise err_invalid("Invalid label name", location="name")
        props = {}
        for k, allowed in (("messageListVisibility", ("show", "hide")),
                           ("labelListVisibility", ("labelShow", "labelShowIfUnread",
                                                    "labelHide"))):
            if k in req:
                if req[k] not in allowed:
                    raise err_invalid("Invalid value at 'label.%s': \"%s\"" % (k, req[k]),
                                      location=k)
                props[k] = req[k]
        if isinstance(req.get("color"), dict):
            props["color"] = dict(req["color"])
        with mb.lock:
            try:
                return mb.create_label(name, props)
            except ValueError:
                raise ApiError(409, "Label name exists or conflicts", "duplicate",
                               status="ABORTED")

    @staticmethod
    def _int_param(query, name, default, lo, hi):
        v = query.get(name)
        if not v:
            return default
        try:
            n = int(v[0])
        except ValueError:
            raise err_invalid("Invalid value '%s'. Values must match the following regular "
                              "expression: '[0-9]+'" % v[0], location=name)
        return max(lo, min(hi, n))

    @staticmethod
    def _bool_param(query, name):
        v = query.get(name)
        return bool(v) and v[0].lower() in ("true", "1")

    def _api_getProfile(self, mb, args, query):
        with mb.lock:
            return {"emailAddress": mb.email, "messagesTotal": len(mb.msgs),
                    "threadsTotal": len(mb.threads), "historyId": str(mb.history_id)}

    def _api_labels_list(self, mb, args, query):
        with mb.lock:
            labs = [{"id": lab, "name": lab, "type": "system"} for lab in SYSTEM_LABELS]
            # the list carries only id, name, the visibilities and type (labels.list reference)
            labs += [{k: v for k, v in mb.label_resource(lab).items() if k != "color"}
                     for lab in mb.user_labels]
        return {"labels": labs}

    def _api_labels_get(self, mb, args, query):
        lab = args[0]
        with mb.lock:
            if lab in SYSTEM_LABELS:
                name, typ = lab, "system"
            elif lab in mb.user_labels:
                name, typ = mb.user_labels[lab], "user"
            else:
                raise err_not_found()
            total = sum(1 for m in mb.msgs.values() if lab in m.labels)
            unread = sum(1 for m in mb.msgs.values() if lab in m.labels and "UNREAD" in m.labels)
        return {"id": lab, "name": name, "type": typ, "messagesTotal": total,
                "messagesUnread": unread, "threadsTotal": total, "threadsUnread": unread}

    def _api_messages_list(self, mb, args, query):
        max_results = self._int_param(query, "maxResults", 100, 1, 500)
        labels = query.get("labelIds", []) + query.get("labelIds[]", [])
        spam_trash = self._bool_param(query, "includeSpamTrash")
        now_ms = int(time.time() * 1000)
        after, before, inc, exc, anywhere = parse_query(query.get("q", [""])[0], now_ms)
        need = list(dict.fromkeys(labels + inc))
        hide = set(exc)
        if not spam_trash and not anywhere:
            hide |= {lab for lab in ("SPAM", "TRASH") if lab not in need}
        tok = query.get("pageToken", [None])[0]
        with mb.lock:
            order = mb.order
            lo = 0
            if before is not None:
                lo = bisect.bisect_left(order, (-before + 1,))
            hi = len(order)
            if after is not None:
                hi = bisect.bisect_left(order, (-after + 1,))
            start = lo
            if tok:
                try:
                    ms_s, seq_s = b64url_decode(tok).decode().split(":")
                    key = (-int(ms_s), -int(seq_s))
                except Exception:
                    raise err_invalid("Invalid pageToken", location="pageToken")
                start = max(lo, bisect.bisect_right(order, key + ("\U0010ffff",)))
            out = []
            total = 0
            nxt = None
            msgs = mb.msgs
            simple = not need and not hide
            if simple:
                total = hi - lo
            for i in range(start, hi):
                m = msgs[order[i][2]]
                if not simple:
                    labs = m.labels
                    if any(lab not in labs for lab in need) or any(lab in hide for lab in labs):
                        continue
                if len(out) == max_results:
                    nxt = b64url(("%d:%d" % (prev.internal_ms, prev.seq)).encode()).rstrip("=")
                    break
                out.append({"id": m.id, "threadId": m.thread_id})
                prev = m
            if not simple:
                # an estimate, like Gmail's: the scan count when cheap, else the range size
                total = (start - lo) + len(out) if nxt is None else hi - lo
        res = {}
        if out:
            res["messages"] = out
        if nxt:
            res["nextPageToken"] = nxt
        res["resultSizeEstimate"] = total
        return res

    def _get_msg(self, mb, mid):
        if not re.fullmatch(r"[0-9a-fA-F]{1,32}", mid):
            raise err_invalid("Invalid id value", location="id")
        m = mb.msgs.get(mid)
        if m is None:
            raise err_not_found()
        return m

    def _api_messages_get(self, mb, args, query):
        fmt = query.get("format", ["full"])[0].lower()
        if fmt not in ("full", "raw", "metadata", "minimal"):
            raise err_invalid("Invalid value at 'format' (type.googleapis.com/"
                              "google.apps.gmail.v1.MessageFormat), \"%s\"" % fmt,
                              location="format")
        with mb.lock:
            m = self._get_msg(mb, args[0])
            res = {"id": m.id, "threadId": m.thread_id, "labelIds": list(m.labels),
                   "snippet": m.snippet, "sizeEstimate": m.size,
                   "historyId": str(m.history_id), "internalDate": str(m.internal_ms)}
            raw = m.raw
            spec = m.spec
        if not res["labelIds"]:
            del res["labelIds"]
        if fmt == "minimal":
            return res
        raw = raw if raw is not None else generate_raw(spec)
        if fmt == "raw":
            res["raw"] = b64url(raw)
        elif fmt == "metadata":
            want = query.get("metadataHeaders", []) + query.get("metadataHeaders[]", [])
            res["payload"] = build_payload(m.id, raw, with_body=False, want_headers=want)
        else:
            res["payload"] = build_payload(m.id, raw)
        return res

    def _api_messages_attachments_get(self, mb, args, query):
        mid, aid = args
        with mb.lock:
            m = self._get_msg(mb, mid)
            raw = m.raw_bytes()
        dec = _decode_att_id(aid)
        if dec is None or dec[0] != mid:
            raise err_invalid("Invalid attachment token", location="id")
        try:
            data = find_part_data(raw, dec[1])
        except (ValueError, IndexError):
            data = None
        if data is None:
            raise err_invalid("Invalid attachment token", location="id")
        return {"size": len(data), "data": b64url(data)}

    def _api_history_list(self, mb, args, query):
        sv = query.get("startHistoryId")
        if not sv or not sv[0].isdigit():
            raise err_invalid("Missing/invalid parameter: startHistoryId",
                              location="startHistoryId")
        start = int(sv[0])
        max_results = self._int_param(query, "maxResults", 100, 1, 500)
        types = set(query.get("historyTypes", []) + query.get("historyTypes[]", []))
        bad = types - {H_ADD, H_DEL, H_LADD, H_LREM}
        if bad:
            raise err_invalid("Invalid value at 'history_types' (type.googleapis.com/"
                              "google.apps.gmail.v1.ListHistoryRequest.HistoryType), \"%s\""
                              % sorted(bad)[0], location="historyTypes")
        label = query.get("labelId", [None])[0]
        tok = query.get("pageToken", [None])[0]
        cfg = self.cfg
        with mb.lock:
            mb.trim(cfg.history_retention_records, cfg.history_retention_s)
            if start < mb.min_valid_start:
                raise err_not_found()
            pos = start
            if tok:
                try:
                    pos = max(start, int(b64url_decode(tok).decode()))
                except Exception:
                    raise err_invalid("Invalid pageToken", location="pageToken")
            i = bisect.bisect_right(mb.hist_ids, pos, lo=mb.hist_base)
            out, nxt = [], None
            recs, n = mb.hist_recs, len(mb.hist_recs)
            while i < n:
                hid, _, kind, mid, tid, labs, changed = recs[i]
                i += 1
                if types and kind not in types:
                    continue
                if label and label not in labs and label not in changed:
                    continue
                if len(out) == max_results:
                    nxt = b64url(str(out[-1]["id"]).encode()).rstrip("=")
                    break
                ref = {"id": mid, "threadId": tid}
                full = {"id": mid, "threadId": tid}
                if labs:
                    full["labelIds"] = list(labs)
                rec = {"id": str(hid), "messages": [ref]}
                if kind == H_ADD:
                    rec["messagesAdded"] = [{"message": full}]
                elif kind == H_DEL:
                    rec["messagesDeleted"] = [{"message": full}]
                elif kind == H_LADD:
                    rec["labelsAdded"] = [{"message": full, "labelIds": list(changed)}]
                else:
                    rec["labelsRemoved"] = [{"message": full, "labelIds": list(changed)}]
                out.append(rec)
            current = mb.history_id
        res = {}
        if out:
            res["history"] = out
        if nxt:
            res["nextPageToken"] = nxt
        res["historyId"] = str(current)
        return res

    # --- batch ----------------------------------------------------------------
    def batch(self, headers, body, query):
        self.count("batch_requests")
        ctype = headers.get("content-type", "")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/mixed") or not m:
            raise err_bad_request("Batch request must be multipart/mixed with a boundary")
        boundary = m.group(1).encode()
        chunks = body.split(b"--" + boundary)
        parts = []
        for ch in chunks[1:]:
            if ch.startswith(b"--"):
                break
            parts.append(ch)
        if not parts:
            raise err_bad_request("Empty batch request")
        if len(parts) > self.cfg.max_batch:
            raise err_bad_request("Too many requests in batch: %d (limit %d)"
                                  % (len(parts), self.cfg.max_batch))
        outer_auth = {k: v for k, v in headers.items() if not k.startswith("content-")}
        out_boundary = "batch_" + secrets.token_hex(12)
        pieces = []
        for ch in parts:
            ch = ch.lstrip(b"\r\n")
            sep = re.search(rb"\r?\n\r?\n", ch)
            if not sep:
                continue
            part_hdrs = self._parse_headers(ch[:sep.start()])
            inner = ch[sep.end():]
            cid = part_hdrs.get("content-id", "").strip()
            status, rhdrs, rbody = self._batch_inner(inner, outer_auth)
            self.count("batch_calls")
            self.count_status(status)
            head = "Content-Type: application/http\r\n"
            if cid:
                head += "Content-ID: <response-%s>\r\n" % cid.strip("<>")
            reason = http.server.BaseHTTPRequestHandler.responses.get(status, ("",))[0]
            inner_head = "HTTP/1.1 %d %s\r\n" % (status, reason)
            for k, v in rhdrs:
                inner_head += "%s: %s\r\n" % (k, v)
            inner_head += "Content-Length: %d\r\n\r\n" % len(rbody)
            pieces.append(("--%s\r\n%s\r\n%s" % (out_boundary, head, inner_head)).encode() +
                          rbody + b"\r\n")
        pieces.append(("--%s--\r\n" % out_boundary).encode())
        return Response(200, body=b"".join(pieces),
                        headers=[("Content-Type", "multipart/mixed; boundary=" + out_boundary)])

    @staticmethod
    def _parse_headers(block):
        out = {}
        for line in block.decode("latin-1").splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                out[k.strip().lower()] = v.strip()
        return out

    def _batch_inner(self, inner, outer_headers):
        sep = re.search(rb"\r?\n\r?\n", inner)
        head = inner[:sep.start()] if sep else inner.rstrip(b"\r\n")
        lines = head.decode("latin-1").splitlines()
        try:
            req_line = lines[0].split()
            method, target = req_line[0].upper(), req_line[1]
        except IndexError:
            e = err_bad_request("Malformed batch part")
            return e.code, [("Content-Type", "application/json; charset=UTF-8")], \
                self.encode_json(e.body, True)
        hdrs = dict(outer_headers)
        hdrs.update(self._parse_headers("\n".join(lines[1:]).encode("latin-1")))
        url = urllib.parse.urlsplit(target)
        if url.scheme or not url.path.startswith("/"):
            e = err_bad_request("Batch parts must use a path, not a full URL: " + target)
            return e.code, [("Content-Type", "application/json; charset=UTF-8")], \
                self.encode_json(e.body, True)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        try:
            resp = self.api_call(method, url.path, query, hdrs, in_batch=True, sleep=False,
                                 body=inner[sep.end():] if sep else b"")
        except ApiError as e:
            return e.code, [("Content-Type", "application/json; charset=UTF-8")] + e.headers, \
                self.encode_json(e.body, True)
        if resp.obj is None:
            return resp.status, resp.headers, resp.body
        pretty = query.get("prettyPrint", ["true"])[0].lower() != "false"
        return resp.status, [("Content-Type", "application/json; charset=UTF-8")], \
            self.encode_json(resp.obj, pretty)

    @staticmethod
    def encode_json(obj, pretty):
        if pretty:
            return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    # --- control API -------------------------------------------------------------
    def generate(self, addr, spec):
        mb = self.mailbox(addr)
        count = int(spec.get("count", 1))
        size = int(spec.get("size", 4096))
        size_max = int(spec.get("size_max", size))
        n_att = int(spec.get("attachments", 0))
        att_size = int(spec.get("attachment_size", 16384))
        interval = float(spec.get("interval_s", 60))
        start = spec.get("start")
        labels = spec.get("labelIds", ["INBOX", "UNREAD"])
        thread_size = max(1, int(spec.get("thread_size", 1)))
        seed = int(spec.get("seed", 1))
        if start is None:
            start = time.time() - interval * count
        start_ms = int(float(start) * 1000)
        rng = random.Random(seed)
        ids = []
        # Bulk allocation of long-lived objects: keep the cyclic GC from rescanning the
        # whole heap again and again (quadratic), then park the result out of its reach.
        gc_was = gc.isenabled()
        gc.disable()
        try:
            self._generate_locked(mb, ids, count, size, size_max, n_att, att_size, interval,
                                  start_ms, labels, thread_size, seed, rng, addr)
        finally:
            if gc_was:
                gc.enable()
            gc.freeze()
        res = {"count": count, "historyId": str(mb.history_id)}
        if ids:
            res["first_id"], res["last_id"] = ids[0], ids[-1]
        if spec.get("return_ids", count <= 1000):
            res["ids"] = ids
        return res

    def _generate_locked(self, mb, ids, count, size, size_max, n_att, att_size, interval,
                         start_ms, labels, thread_size, seed, rng, addr):
        with mb.lock:
            base = mb.seq  # unique per mailbox even after deletes
            thread_root = None
            for i in range(count):
                idx = base + i
                sz = size if size_max <= size else rng.randint(size, size_max)
                date_ms = start_ms + int(i * interval * 1000)
                subject = "Generated message %d" % idx
                spec_t = (idx, sz, n_att, att_size, seed, addr, date_ms, subject)
                snippet = gen_snippet(spec_t)
                tid = thread_root if (i % thread_size) else None
                m = mb.add(date_ms, labels, spec=spec_t, thread_id=tid, snippet=snippet,
                           size=generated_size(spec_t))
                if i % thread_size == 0:
                    thread_root = m.id
                ids.append(m.id)

    def add_messages(self, addr, spec):
        mb = self.mailbox(addr)
        items = spec.get("messages") or [spec]
        out = []
        for it in items:
            raw = b64url_decode(it["raw"])
            if "internalDate" in it:
                ms = int(it["internalDate"])
            else:
                ms = None
                try:
                    hdr = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
                    d = hdr.get("Date")
                    if d:
                        ms = int(email.utils.parsedate_to_datetime(d).timestamp() * 1000)
                except Exception:
                    ms = None
                if ms is None:
                    ms = int(time.time() * 1000)
            with mb.lock:
                m = mb.add(ms, it.get("labelIds", ["INBOX", "UNREAD"]), raw=raw,
                           thread_id=it.get("threadId"))
                out.append({"id": m.id, "threadId": m.thread_id, "historyId": str(m.history_id),
                            "internalDate": str(m.internal_ms), "sizeEstimate": m.size})
        return out if spec.get("messages") else out[0]

    def control(self, method, path, query, body):
        """The test control API (/_emulator/...). Returns (status, obj)."""
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": "body must be JSON"}
        p = path[len("/_emulator"):].rstrip("/") or "/"
        parts = [urllib.parse.unquote(x) for x in p.strip("/").split("/")] if p != "/" else []
        try:
            if p == "/reset" and method == "POST":
                self.cfg = Config(**self.defaults)
                with self.lock:
                    self._reset_state()
                return 200, {"ok": True}
            if p == "/config":
                if method == "POST":
                    self.cfg.update(data)
                    if "history_id_gap" in data:
                        for mb in self.users.values():
                            mb.gap = max(1, self.cfg.history_id_gap)
                return 200, self.cfg.as_dict()
            if p == "/counters":
                return 200, self.counters()
            if p == "/counters/reset" and method == "POST":
                with self.lock:
                    self._reset_counters()
                return 200, {"ok": True}
            if p == "/faults":
                # ?user= (or {"user"} in a DELETE body): only that user's faults
                who = (query.get("user") or [data.get("user") if method == "DELETE" else None])[0]
                if method == "POST":
                    return 200, self.add_fault(data)
                if method == "DELETE":
                    with self.lock:
                        self.faults = [f for f in self.faults if who and f["user"] != who]
                    return 200, {"ok": True}
                with self.lock:
                    return 200, {"faults": [f for f in self.faults
                                            if not who or f["user"] == who]}
            if p == "/tokens/revoke" and method == "POST":
                ok = self.revoke(data.get("refresh_token", ""))
                return (200 if ok else 404), {"revoked": ok}
            if p == "/tokens/expire" and method == "POST":
                return 200, {"expired": self.expire_access(data.get("email"))}
            if p == "/tokens/add" and method == "POST":
                addr = data["email"]
                self.mailbox(addr)
                with self.lock:
                    cid = data.get("client_id", "emulator-client")
                    if "client_secret" in data:
                        self.clients[cid] = data["client_secret"]
                    self.refresh[data["refresh_token"]] = (addr, cid,
                                                           data.get("scope", SCOPE_DEFAULT))
                return 200, {"ok": True}
            if p == "/projects":
                if method == "POST":
                    return 200, self.set_project(data.get("project", ""),
                                                 {k: v for k, v in data.items()
                                                  if k != "project"})
                return 200, {"projects": [self.project_config(k) for k in list(self.projects)]}
            if len(parts) in (2, 3) and parts[0] == "projects" and \
                    (len(parts) == 2 or parts[2] == "config"):
                if method == "POST":
                    return 200, self.set_project(parts[1], data)
                return 200, self.project_config(parts[1])
            if parts[:1] == ["pubsub"]:
                return self.push.control(method, parts[1:], query, data)
            if p == "/users":
                if method == "POST":
                    return 200, self.create_user(data)
                return 200, {"users": [self.user_summary(a) for a in list(self.users)]}
            if len(parts) >= 2 and parts[0] == "users":
                addr = parts[1]
                if len(parts) == 2:
                    if method == "DELETE":
                        ok = self.delete_user(addr)
                        return (200 if ok else 404), {"deleted": ok}
                    return 200, self.user_summary(addr)
                mb = self.mailbox(addr)
                rest = parts[2:]
                if rest == ["messages"] and method == "POST":
                    return 200, self.add_messages(addr, data)
                if rest == ["messages"] and method == "GET":
                    with mb.lock:
                        return 200, {"messages": [
                            {"id": k[2], "threadId": mb.msgs[k[2]].thread_id,
                             "labelIds": list(mb.msgs[k[2]].labels),
                             "internalDate": str(mb.msgs[k[2]].internal_ms)}
                            for k in mb.order]}
                if rest == ["messages", "generate"] and method == "POST":
                    return 200, self.generate(addr, data)
                if len(rest) == 2 and rest[0] == "messages" and method == "DELETE":
                    with mb.lock:
                        m = mb.delete(rest[1])
                    if m is None:
                        return 404, {"error": "no such message"}
                    return 200, {"id": m.id, "historyId": str(mb.history_id)}
                if len(rest) == 3 and rest[0] == "messages" and rest[2] == "labels" \
                        and method == "POST":
                    with mb.lock:
                        m = mb.relabel(rest[1], data.get("add", []), data.get("remove", []))
                        if m is None:
                            return 404, {"error": "no such message"}
                        return 200, {"id": m.id, "labelIds": list(m.labels),
                                     "historyId": str(mb.history_id)}
                if len(rest) == 3 and rest[0] == "messages" and rest[2] in ("trash", "untrash") \
                        and method == "POST":
                    # what the user does in the Gmail UI: history labelAdded/labelRemoved TRASH
                    with mb.lock:
                        m = mb.relabel(rest[1], ["TRASH"] if rest[2] == "trash" else [],
                                       ["TRASH"] if rest[2] == "untrash" else [])
                        if m is None:
                            return 404, {"error": "no such message"}
                        return 200, {"id": m.id, "labelIds": list(m.labels),
                                     "historyId": str(mb.history_id)}
                if rest == ["labels"]:
                    with mb.lock:
                        if method == "POST":
                            try:
                                return 200, mb.create_label(
                                    data.get("name"),
                                    {k: data[k] for k in ("messageListVisibility",
                                                          "labelListVisibility", "color")
                                     if k in data},
                                    data.get("id"))
                            except ValueError as e:
                                return 409, {"error": str(e)}
                        return 200, {"labels": [mb.label_resource(k) for k in SYSTEM_LABELS] +
                                     [mb.label_resource(k) for k in mb.user_labels]}
                if rest == ["config"]:
                    if method == "POST":
                        return 200, self.set_overrides(addr, data)
                    return 200, self.user_config(addr)
                if rest == ["history", "expire"] and method == "POST":
                    keep = int(data.get("keep_records", 0))
                    with mb.lock:
                        if keep > 0:
                            mb.trim(keep, 0)
                        else:
                            mb.expire_all_history()
                    return 200, self.user_summary(addr)
            return 404, {"error": "unknown control endpoint %s %s" % (method, path)}
        except KeyError as e:
            return 404, {"error": "unknown user or missing field: %s" % e}
        except (ValueError, TypeError) as e:
            return 400, {"error": str(e)}


# ---------------------------------------------------------------------------
# Push notifications: users.watch / users.stop and Cloud Pub/Sub push delivery
# ---------------------------------------------------------------------------
#
# Gmail publishes {"emailAddress", "historyId"} to the Pub/Sub topic named in
# users.watch; Pub/Sub delivers it to each push subscription of the topic as an
# HTTP POST of the push envelope, optionally with an OIDC token (a JWT signed by
# Google, RS256) in "Authorization: Bearer". Here the subscriptions are set with
# the control API (/_emulator/pubsub/subscriptions) or --push-endpoint, and the
# tokens are signed with a key given as a PEM file (tests make one at run time);
# GET /oauth2/v3/certs serves the public keys as a JWKS, as Google does.

WATCH_TTL_MS = 7 * 24 * 3600 * 1000    # users.watch: expiration = now + 7 days
PUSH_MIN_INTERVAL_S = 1.0              # Gmail: at most one notification per user per second
PUSH_MAX_ATTEMPTS = 5                  # then the message is dropped (Pub/Sub: dead letter)
_TOPIC_RE = re.compile(r"^projects/[A-Za-z0-9._:-]+/topics/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$")
_SUB_RE = re.compile(r"^projects/[A-Za-z0-9._:-]+/subscriptions/[A-Za-z][A-Za-z0-9._~+%-]{2,254}$")
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class RsaKey:
    """An RSA private key from a PEM file (its numbers read once through the openssl
    command), signing RS256 in pure Python."""

    def __init__(self, path, kid=None):
        out = subprocess.run(["openssl", "pkey", "-in", path, "-noout", "-text"],
                             check=True, capture_output=True, text=True).stdout
        nums, cur = {}, None
        for line in out.splitlines():
            s = line.strip()
            if s.endswith(":") and not line.startswith(" "):
                cur = s[:-1]
                nums[cur] = ""
            elif cur and line.startswith(" "):
                nums[cur] += s.replace(":", "")
            elif s.startswith("publicExponent:"):
                self.e = int(s.split()[1])
                cur = None
            else:
                cur = None
        self.n = int(nums["modulus"], 16)
        self.d = int(nums["privateExponent"], 16)
        self.k = (self.n.bit_length() + 7) // 8
        self.kid = kid or hashlib.sha256(str(self.n).encode()).hexdigest()[:40]

    def sign(self, data):
        t = _SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
        em = b"\x00\x01" + b"\xff" * (self.k - len(t) - 3) + b"\x00" + t
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(self.k, "big")

    def jwk(self):
        def b64u_int(v):
            return b64url(v.to_bytes((v.bit_length() + 7) // 8, "big")).rstrip("=")
        return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                "n": b64u_int(self.n), "e": b64u_int(self.e)}

    def jwt(self, claims):
        def enc(obj):
            return b64url(json.dumps(obj, separators=(",", ":")).encode()).rstrip("=")
        head = enc({"alg": "RS256", "kid": self.kid, "typ": "JWT"}) + "." + enc(claims)
        return head + "." + b64url(self.sign(head.encode())).rstrip("=")


class PushNotifier:
    """Watches per user, push subscriptions per topic, and the delivery thread."""

    def __init__(self, log, key_file=None):
        self.log = log
        self.lock = threading.Condition()
        self.keys = {}                 # path -> RsaKey
        self.default_key = key_file
        self.subs = {}                 # subscription name -> spec
        self.reset()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="pubsub-push", daemon=True)
        self.thread.start()

    def reset(self):
        with self.lock:
            self.watches = {}          # email -> {topic, labelIds, behavior, expiration, historyId}
            self.pending = {}          # email -> (historyId, first seen monotonic)
            self.last_sent = {}        # email -> monotonic time of the last publish
            self.retries = []          # [(not_before, attempt, sub name, envelope, email, hid)]
            self.deliveries = []       # the last 1000 attempts
            self.subs = {k: v for k, v in self.subs.items() if v.get("from_cli")}
            self.counters = {"published": 0, "push_requests": 0, "push_acked": 0,
                             "push_rejected": 0, "push_errors": 0, "push_dropped": 0}
            self.lock.notify_all()

    def close(self):
        with self.lock:
            self.stopping = True
            self.lock.notify_all()

    def key(self, path=None):
        path = path or self.default_key
        if not path:
            raise ValueError("an OIDC token needs a signing key: \"key_file\" or --push-key")
        with self.lock:
            k = self.keys.get(path)
        if k is None:
            k = RsaKey(path)
            with self.lock:
                self.keys[path] = k
        return k

    def jwks(self):
        with self.lock:
            return {"keys": [k.jwk() for k in self.keys.values()]}

    # --- control API ----------------------------------------------------------
    def set_subscription(self, spec, from_cli=False):
        name = spec.get("name", "")
        topic = spec.get("topic", "")
        if not _SUB_RE.match(name or ""):
            raise ValueError("name must be projects/P/subscriptions/S")
        if not _TOPIC_RE.match(topic or ""):
            raise ValueError("topic must be projects/P/topics/T")
        ep = spec.get("push_endpoint", "")
        if urllib.parse.urlsplit(ep).scheme not in ("http", "https"):
            raise ValueError("push_endpoint must be an http(s) URL")
        oidc = spec.get("oidc_token")
        sub = {"name": name, "topic": topic, "push_endpoint": ep, "ca_file": spec.get("ca_file"),
               "from_cli": from_cli}
        if oidc is not None:
            if not isinstance(oidc, dict) or not oidc.get("service_account_email"):
                raise ValueError("oidc_token needs service_account_email")
            k = self.key(spec.get("key_file"))
            sub["oidc"] = {"service_account_email": oidc["service_account_email"],
                           "audience": oidc.get("audience") or ep, "key": k}
        with self.lock:
            self.subs[name] = sub
        return self.describe(sub)

    @staticmethod
    def describe(sub):
        out = {k: sub[k] for k in ("name", "topic", "push_endpoint")}
        if "oidc" in sub:
            out["oidc_token"] = {"service_account_email": sub["oidc"]["service_account_email"],
                                 "audience": sub["oidc"]["audience"], "kid": sub["oidc"]["key"].kid}
        return out

    def control(self, method, rest, query, data):
        if rest == ["subscriptions"]:
            if method == "POST":
                return 200, self.set_subscription(data)
            if method == "DELETE":
                with self.lock:
                    gone = self.subs.pop(data.get("name") or query.get("name", [""])[0], None)
                return (200 if gone else 404), {"deleted": gone is not None}
            with self.lock:
                return 200, {"subscriptions": [self.describe(s) for s in self.subs.values()]}
        if rest == ["deliveries"] and method == "GET":
            who = query.get("subscription", [None])[0]
            with self.lock:
                return 200, {"deliveries": [d for d in self.deliveries
                                            if not who or d["subscription"] == who],
                             "counters": dict(self.counters)}
        if rest == ["watches"] and method == "GET":
            with self.lock:
                return 200, {"watches": {a: dict(w) for a, w in self.watches.items()}}
        return 404, {"error": "unknown pubsub control endpoint"}

    # --- the Gmail methods -------------------------------------------------------
    def watch(self, mb, req):
        topic = req.get("topicName")
        if not isinstance(topic, str) or not topic:
            raise err_invalid("Invalid topicName: missing", location="topicName")
        if not _TOPIC_RE.match(topic):
            raise err_invalid("Invalid topicName does not match projects/SOME-PROJECT/topics/*",
                              location="topicName")
        labels = req.get("labelIds", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise err_invalid("Invalid value at 'labelIds'", location="labelIds")
        behavior = req.get("labelFilterBehavior") or req.get("labelFilterAction") or "include"
        if behavior not in ("include", "exclude"):
            raise err_invalid("Invalid value at 'labelFilterBehavior'",
                              location="labelFilterBehavior")
        exp = int(time.time() * 1000) + WATCH_TTL_MS
        with self.lock:
            self.watches[mb.email] = {"topicName": topic, "labelIds": list(labels),
                                      "labelFilterBehavior": behavior, "expiration": exp,
                                      "historyId": mb.history_id}
        self.log("watch %s topic %s labels %s (%s)" % (mb.email, topic, labels, behavior))
        return {"historyId": str(mb.history_id), "expiration": str(exp)}

    def stop(self, addr):
        with self.lock:
            self.watches.pop(addr, None)
            self.pending.pop(addr, None)
        self.log("stop %s" % addr)

    def on_change(self, mb, hid, labels, changed):
        """A history record of mailbox mb (called with mb.lock held)."""
        with self.lock:
            w = self.watches.get(mb.email)
            if w is None or w["expiration"] <= time.time() * 1000:
                return
            if w["labelIds"]:
                hit = bool(set(w["labelIds"]) & (set(labels) | set(changed)))
                if hit != (w["labelFilterBehavior"] == "include"):
                    return
            first = self.pending.get(mb.email, (0, time.monotonic()))[1]
            self.pending[mb.email] = (hid, first)
            self.lock.notify_all()

    # --- delivery --------------------------------------------------------------
    def _run(self):
        seq = int(time.time() * 1000) % 10 ** 12
        while True:
            jobs = []
            with self.lock:
                if self.stopping:
                    return
                now = time.monotonic()
                wait = 1.0
                for addr, (hid, _) in list(self.pending.items()):
                    w = self.watches.get(addr)
                    if w is None:
                        del self.pending[addr]
                        continue
                    due = self.last_sent.get(addr, -1e9) + PUSH_MIN_INTERVAL_S
                    if due > now:
                        wait = min(wait, due - now)
                        continue
                    del self.pending[addr]
                    self.last_sent[addr] = now
                    seq += 1
                    self.counters["published"] += 1
                    data = json.dumps({"emailAddress": addr, "historyId": hid}).encode()
                    msg = {"data": base64.b64encode(data).decode(), "messageId": str(seq),
                           "message_id": str(seq), "attributes": {},
                           "publishTime": rfc3339_ms(time.time()),
                           "publish_time": rfc3339_ms(time.time())}
                    for s in self.subs.values():
                        if s["topic"] == w["topicName"]:
                            jobs.append((1, s["name"], msg, addr, hid))
                keep = []
                for r in self.retries:
                    if r[0] <= now:
                        jobs.append(r[1:])
                    else:
                        wait = min(wait, r[0] - now)
                        keep.append(r)
                self.retries = keep
                if not jobs:
                    self.lock.wait(max(wait, 0.005))
                    continue
            for attempt, name, msg, addr, hid in jobs:
                self._deliver(attempt, name, msg, addr, hid)

    def _deliver(self, attempt, name, msg, addr, hid):
        with self.lock:
            sub = self.subs.get(name)
        if sub is None:
            return
        body = json.dumps({"message": msg, "subscription": name}).encode()
        headers = {"Content-Type": "application/json",
                   "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"}
        if "oidc" in sub:
            o = sub["oidc"]
            now = int(time.time())
            uid = "1%020d" % (int(hashlib.sha256(o["service_account_email"].encode())
                                  .hexdigest()[:16], 16) % 10 ** 20)  # the account's numeric id
            headers["Authorization"] = "Bearer " + o["key"].jwt({
                "aud": o["audience"], "azp": uid, "email": o["service_account_email"],
                "email_verified": True, "exp": now + 3600, "iat": now,
                "iss": "https://accounts.google.com", "sub": uid})
        url = urllib.parse.urlsplit(sub["push_endpoint"])
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        status, err = 0, None
        try:
            if url.scheme == "https":
                ctx = ssl.create_default_context(cafile=sub.get("ca_file"))
                conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=ctx,
                                                   timeout=10)
            else:
                conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            err = str(e)
        acked = status in (102, 200, 201, 202, 204)
        with self.lock:
            self.counters["push_requests"] += 1
            if acked:
                self.counters["push_acked"] += 1
            elif status:
                self.counters["push_rejected"] += 1
            else:
                self.counters["push_errors"] += 1
            self.deliveries.append({"subscription": name, "emailAddress": addr,
                                    "historyId": hid, "messageId": msg["messageId"],
                                    "attempt": attempt, "status": status, "error": err,
                                    "time": round(time.time(), 3)})
            del self.deliveries[:-1000]
            if not acked:
                if attempt < PUSH_MAX_ATTEMPTS:
                    delay = min(10.0, 0.1 * 2 ** (attempt - 1))  # Pub/Sub: exponential backoff
                    self.retries.append((time.monotonic() + delay, attempt + 1, name, msg, addr,
                                         hid))
                else:
                    self.counters["push_dropped"] += 1
        if not acked:
            self.log("push %s to %s: %s (attempt %d)" % (
                name, sub["push_endpoint"].split("?")[0], status or err, attempt))


# ---------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""
    timeout = 300

    def log_message(self, fmt, *args):  # silence the default stderr logging
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += self.rfile.read(size)
                self.rfile.readline(65537)
                if len(data) > MAX_BODY:
                    raise ValueError("body too large")
            return bytes(data)
        return self.rfile.read(n) if n else b""

    def _dispatch(self, method):
        emu = self.server.emu
        t0 = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(413, b"", [])
            return
        emu.count("http_requests")
        if path == "/healthz" or path == "/_emulator/health":
            self._send_json(200, {"status": "ok", "users": len(emu.users),
                                  "features": list(FEATURES)}, pretty=False)
            return
        if path == "/oauth2/v3/certs":  # the push tokens' signing keys, as Google's JWKS
            self._send_json(200, emu.push.jwks(), pretty=False)
            return
        if path.startswith("/_emulator/") or path == "/_emulator":
            status, obj = emu.control(method, path, query, body)
            self.server.logf("control %s %s -> %d" % (method, path, status))
            self._send_json(status, obj, pretty=False)
            return
        user = None  # whom the request acts for: user faults, per-user latency
        if emu.faults or path in ("/token", "/batch/gmail/v1"):
            user = emu.request_user(path, headers, query, body)
        fault = emu.take_fault(path, user=user)
        if fault:
            self.server.logf("fault %s on %s %s" % (fault["kind"], method, path))
            if self._apply_fault(fault):
                return
        pretty = query.get("prettyPrint", ["true"])[0].lower() != "false"
        try:
            if path == "/token" and method == "POST":
                emu.sleep_latency(user)
                resp = emu.token_endpoint(headers, body)
                pretty = True
            elif path == "/batch/gmail/v1" and method == "POST":
                emu.sleep_latency(user)
                resp = emu.batch(headers, body, query)
            else:
                resp = emu.api_call(method, path, query, headers, body=body)
        except ApiError as e:
            resp = Response(e.code, e.body, headers=e.headers)
        except Exception as e:  # a bug in the emulator: answer like Google would
            self.server.logf("internal error on %s %s: %r" % (method, path, e))
            e2 = err_backend(500)
            resp = Response(500, e2.body)
        if fault and fault["kind"] in ("truncate", "malformed"):
            self._send_broken(fault["kind"], resp, pretty)
            return
        emu.count_status(resp.status)
        if resp.obj is not None:
            self._send_json(resp.status, resp.obj, pretty, resp.headers)
        else:
            self._send(resp.status, resp.body, resp.headers)
        # 429s are counted, not logged one by one (a quota-bound benchmark makes many)
        if emu.cfg.log_requests or (resp.status >= 400 and resp.status != 429):
            self.server.logf("%s %s -> %d %.1fms" % (method, path, resp.status,
                                                     (time.monotonic() - t0) * 1000))

    def _apply_fault(self, f):
        """Returns True when the request has been fully handled."""
        emu = self.server.emu
        if f["delay_ms"]:
            time.sleep(f["delay_ms"] / 1000.0)
        if f["kind"] == "delay":
            return False
        if f["kind"] == "reset":
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass
            self.close_connection = True
            return True
        if f["kind"] == "status":
            e = err_backend(f["status"])
            emu.count_status(f["status"])
            self._send_json(f["status"], e.body, True)
            return True
        return False

    def _send_broken(self, kind, resp, pretty):
        body = Emulator.encode_json(resp.obj, pretty) if resp.obj is not None else resp.body
        if kind == "malformed":
            body = body[: max(1, len(body) // 2)] + b"}\x00 not json"
            self._send(resp.status, body, [("Content-Type", "application/json; charset=UTF-8")],
                       allow_gzip=False)
            return
        head = self._head(resp.status, len(body),
                          [("Content-Type", "application/json; charset=UTF-8")])
        try:
            self.wfile.write(head + body[: len(body) // 2])
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _head(self, status, length, headers):
        reason = self.responses.get(status, ("",))[0]
        lines = ["HTTP/1.1 %d %s" % (status, reason),
                 "Date: " + self.date_time_string(), "Server: ESF",
                 "Content-Length: %d" % length]
        lines += ["%s: %s" % kv for kv in headers]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_json(self, status, obj, pretty, headers=()):
        body = Emulator.encode_json(obj, pretty)
        self._send(status, body, [("Content-Type", "application/json; charset=UTF-8"),
                                  ("Vary", "Origin, X-Origin, Referer")] + list(headers))

    def _send(self, status, body, headers, allow_gzip=True):
        emu = self.server.emu
        headers = list(headers)
        if (allow_gzip and emu.cfg.gzip and len(body) > 1024 and
                "gzip" in self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        if self.command == "HEAD":
            body = b""
        data = self._head(status, len(body), headers) + body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
        emu.count("bytes_sent", len(data))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, emu, ssl_ctx, logf):
        self.emu = emu
        self.ssl_ctx = ssl_ctx
        self.logf = logf
        super().__init__(addr, Handler)

    def process_request_thread(self, request, client_address):
        # TLS handshake here, in the connection's own thread, so a slow or
        # broken client never blocks the accept loop.
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_ctx is not None:
                request.settimeout(30)
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
                request.settimeout(None)
        except (OSError, ssl.SSLError):
            try:
                request.close()
            except OSError:
                pass
            return
        super().process_request_thread(request, client_address)

    def handle_error(self, request, client_address):
        pass  # client went away; nothing useful to log


def make_ssl_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def start_server(emu, host, port, cert=None, key=None, logf=None):
    """Start in a background thread; returns (server, thread). port 0 = pick one."""
    ctx = make_ssl_context(cert, key) if cert else None
    srv = Server((host, port), emu, ctx, logf or (lambda m: None))
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    th.start()
    return srv, th


def load_seed_file(emu, path):
    with open(path, "r", encoding="utf-8") as f:
        spec = json.load(f)
    for u in spec.get("users", []):
        emu.create_user(u)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Gmail API v1 emulator (HTTPS, in-memory)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18443)
    ap.add_argument("--cert", help="PEM certificate (chain) for HTTPS")
    ap.add_argument("--key", help="PEM private key for HTTPS")
    ap.add_argument("--no-tls", action="store_true", help="plain HTTP (debugging only)")
    ap.add_argument("--state-dir", help="directory for the ready file and the pid")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--latency-jitter-ms", type=float, default=0.0)
    ap.add_argument("--quota-units-per-min", type=float, default=6000.0,
                    help="per-user units per minute (0 = unlimited)")
    ap.add_argument("--quota-units-per-s", type=float, default=None,
                    help="older form: per-user units per second (x 60 per minute)")
    ap.add_argument("--quota-burst-s", type=float, default=1.0,
                    help="seconds of the per-minute rate that may be spent at once (60: all)")
    ap.add_argument("--project-quota-units-per-min", type=float, default=1200000.0,
                    help="per-project units per minute (0 = unlimited)")
    ap.add_argument("--project-quota-burst-s", type=float, default=1.0)
    ap.add_argument("--quota-mode", choices=["429", "403"], default="429",
                    help="status of a per-user quota answer (reason userRateLimitExceeded)")
    ap.add_argument("--retry-after", action="store_true",
                    help="send Retry-After on quota answers (Google documents none)")
    ap.add_argument("--no-retry-after", action="store_true", help="the default")
    ap.add_argument("--concurrency-limit", type=int, default=10, help="per user; 0 = none")
    ap.add_argument("--history-retention", type=int, default=0,
                    help="keep at most N history records per user (0 = unlimited)")
    ap.add_argument("--history-retention-s", type=float, default=0.0,
                    help="drop history records older than S seconds (0 = never)")
    ap.add_argument("--history-id-gap", type=int, default=5,
                    help="historyIds advance by a random 1..N")
    ap.add_argument("--access-token-ttl-s", type=int, default=3599)
    ap.add_argument("--no-gzip", action="store_true")
    ap.add_argument("--log-requests", action="store_true")
    ap.add_argument("--seed-file", help="JSON {\"users\": [<POST /_emulator/users bodies>]}")
    ap.add_argument("--push-key", help="PEM RSA private key signing the push OIDC tokens")
    ap.add_argument("--push-endpoint", help="URL of a push subscription to --push-topic")
    ap.add_argument("--push-topic", default="projects/lattice-local/topics/gmail",
                    help="topic of the --push-endpoint subscription")
    ap.add_argument("--push-audience", help="OIDC audience (default: the endpoint URL)")
    ap.add_argument("--push-service-account",
                    help="OIDC token email; without it the push carries no token")
    a = ap.parse_args(argv)
    if not a.no_tls and not (a.cert and a.key):
        ap.error("--cert and --key are required (or --no-tls)")

    def logf(msg):
        sys.stdout.write("%s gmail-emulator: %s\n" % (
            datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), msg))
        sys.stdout.flush()

    cfg = Config(latency_ms=a.latency_ms, latency_jitter_ms=a.latency_jitter_ms,
                 quota_units_per_min=(a.quota_units_per_s * 60.0
                                      if a.quota_units_per_s is not None
                                      else a.quota_units_per_min),
                 quota_burst_s=a.quota_burst_s,
                 project_quota_units_per_min=a.project_quota_units_per_min,
                 project_quota_burst_s=a.project_quota_burst_s,
                 quota_mode=a.quota_mode, retry_after=a.retry_after and not a.no_retry_after,
                 concurrency_limit=a.concurrency_limit,
                 history_retention_records=a.history_retention,
                 history_retention_s=a.history_retention_s, history_id_gap=a.history_id_gap,
                 access_token_ttl_s=a.access_token_ttl_s, gzip=not a.no_gzip,
                 log_requests=a.log_requests)
    gc.set_threshold(50000, 20, 50)  # large, long-lived heaps: fewer full collections
    emu = Emulator(cfg, logf, push_key=a.push_key)
    if a.push_endpoint:
        sub = {"name": "projects/%s/subscriptions/gmail-push" % a.push_topic.split("/")[1],
               "topic": a.push_topic, "push_endpoint": a.push_endpoint}
        if a.push_service_account:
            sub["oidc_token"] = {"service_account_email": a.push_service_account,
                                 "audience": a.push_audience}
        emu.push.set_subscription(sub, from_cli=True)
    if a.seed_file:
        load_seed_file(emu, a.seed_file)
    srv, th = start_server(emu, a.host, a.port, None if a.no_tls else a.cert,
                           None if a.no_tls else a.key, logf)
    scheme = "http" if a.no_tls else "https"
    url = "%s://%s:%d" % (scheme, a.host, srv.server_address[1])
    ready = None
    if a.state_dir:
        os.makedirs(a.state_dir, exist_ok=True)
        with open(os.path.join(a.state_dir, "gmail-emulator.pid"), "w") as f:
            f.write("%d\n" % os.getpid())
        ready = os.path.join(a.state_dir, "gmail-emulator.ready")
        with open(ready + ".tmp", "w") as f:
            f.write(url + "\n")
        os.replace(ready + ".tmp", ready)
    logf("listening on %s (config %s)" % (url, json.dumps(cfg.as_dict(), sort_keys=True)))

    stop = threading.Event()

    def on_signal(signum, frame):
        logf("signal %d: shutting down" % signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    last = None
    while not stop.wait(10.0):
        c = emu.c
        snap = (c["http_requests"], c["api_calls"])
        if snap != last and last is not None:
            logf("stats http=%d api=%d units=%d rate_limited=%d max_conc=%d faults=%d" % (
                c["http_requests"], c["api_calls"], c["units_spent"], c["rate_limited"],
                c["max_concurrency"], c["faults_injected"]))
        last = snap
    srv.shutdown()
    srv.server_close()
    emu.push.close()
    if ready and os.path.exists(ready):
        os.unlink(ready)
    logf("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
