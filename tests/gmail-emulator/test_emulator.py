"""Tests of the Gmail API emulator itself.

Runs tests/gmail-emulator/run as a subprocess on a random port with a throwaway
self-signed certificate (openssl), and talks to it over HTTPS with the
standard library only.  Run:  python3 -m pytest -q tests/gmail-emulator
"""

import base64
import email
import email.policy
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gmail_emulator  # noqa: E402  (unit tests of pure helpers)

USER = "alice@example.com"
RT = "rt-alice"
CID = "client-1"
SECRET = "secret-1"


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def server():
    tmp = tempfile.mkdtemp(prefix="gmail-emu-test-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    state = os.path.join(tmp, "state")
    log = open(os.path.join(tmp, "emulator.log"), "w")
    proc = subprocess.Popen([os.path.join(HERE, "run"), "--port", "0", "--cert", cert,
                             "--key", key, "--state-dir", state], stdout=log,
                            stderr=subprocess.STDOUT)
    ready = os.path.join(state, "gmail-emulator.ready")
    deadline = time.time() + 60  # a hang guard: python starts slowly on a loaded machine
    while not os.path.exists(ready):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("emulator did not start: " + open(log.name).read())
        time.sleep(0.05)
    url = open(ready).read().strip()
    port = int(url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=cert)
    yield {"port": port, "ctx": ctx, "proc": proc, "log": log.name}
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert not os.path.exists(ready)
    shutil.rmtree(tmp, ignore_errors=True)


class Client:
    def __init__(self, srv):
        self.srv = srv
        self.token = None

    def conn(self, timeout=30):
        return http.client.HTTPSConnection("127.0.0.1", self.srv["port"],
                                           context=self.srv["ctx"], timeout=timeout)

    def request(self, method, path, body=None, headers=None, auth=True, conn=None):
        h = dict(headers or {})
        if auth and self.token and "Authorization" not in h:
            h["Authorization"] = "Bearer " + self.token
        c = conn or self.conn()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def json(self, method, path, body=None, headers=None, auth=True):
        st, h, data = self.request(method, path, body, headers, auth)
        return st, h, (json.loads(data) if data else None)

    def ctl(self, method, path, obj=None):
        st, _, data = self.json(method, "/_emulator" + path,
                                json.dumps(obj).encode() if obj is not None else None,
                                {"Content-Type": "application/json"}, auth=False)
        return st, data

    def refresh(self, rt=RT, cid=CID, secret=SECRET):
        body = urllib.parse.urlencode({"grant_type": "refresh_token", "client_id": cid,
                                       "client_secret": secret, "refresh_token": rt})
        return self.json("POST", "/token", body,
                         {"Content-Type": "application/x-www-form-urlencoded"}, auth=False)

    def login(self):
        st, _, tok = self.refresh()
        assert st == 200, tok
        self.token = tok["access_token"]
        return tok

    def api(self, path, **params):
        q = urllib.parse.urlencode(params, doseq=True)
        return self.json("GET", "/gmail/v1/users/me/" + path + ("?" + q if q else ""))


@pytest.fixture
def cl(server):
    c = Client(server)
    st, _ = c.ctl("POST", "/reset")
    assert st == 200
    st, _ = c.ctl("POST", "/config", {"quota_units_per_s": 0})  # quota off unless a test sets it
    assert st == 200
    st, _ = c.ctl("POST", "/users", {"email": USER, "refresh_token": RT, "client_id": CID,
                                     "client_secret": SECRET})
    assert st == 200
    c.login()
    return c


def make_raw(subject="hello", date="Mon, 01 Jan 2024 10:00:00 +0000", attach=None):
    lines = ["From: Bob <bob@example.net>", "To: " + USER, "Subject: " + subject,
             "Date: " + date, "Message-ID: <%s@test.invalid>" % subject, "MIME-Version: 1.0"]
    if attach is None:
        lines += ["Content-Type: text/plain; charset=UTF-8", "", "Body of " + subject, ""]
    else:
        enc = base64.encodebytes(attach).decode().replace("\n", "\r\n")
        lines += ['Content-Type: multipart/mixed; boundary="BB"', "", "--BB",
                  "Content-Type: text/plain; charset=UTF-8", "", "Text of " + subject, "--BB",
                  'Content-Type: application/pdf; name="a.pdf"',
                  'Content-Disposition: attachment; filename="a.pdf"',
                  "Content-Transfer-Encoding: base64", "", enc.rstrip("\r\n"), "--BB--", ""]
    return "\r\n".join(lines).encode()


def add_raw(cl, raw, **kw):
    body = {"raw": base64.urlsafe_b64encode(raw).decode()}
    body.update(kw)
    st, res = cl.ctl("POST", "/users/%s/messages" % USER, body)
    assert st == 200, res
    return res


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def google_error(body, code, reason):
    err = body["error"]
    assert err["code"] == code
    assert err["errors"][0]["reason"] == reason
    assert isinstance(err["message"], str) and err["message"]
    assert "status" in err


# ---------------------------------------------------------------------------
# health, OAuth
# ---------------------------------------------------------------------------

def test_healthz(server):
    c = Client(server)
    st, _, body = c.json("GET", "/healthz", auth=False)
    assert st == 200 and body["status"] == "ok"
    assert {"fault_user", "user_config"} <= set(body["features"])


def test_token_refresh_success_shape(cl):
    st, h, tok = cl.refresh()
    assert st == 200
    assert set(tok) == {"access_token", "expires_in", "scope", "token_type"}
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 3599
    assert "gmail" in tok["scope"]
    assert "refresh_token" not in tok


def test_token_basic_auth_client(cl):
    body = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": RT})
    basic = base64.b64encode(("%s:%s" % (CID, SECRET)).encode()).decode()
    st, _, tok = cl.json("POST", "/token", body,
                         {"Content-Type": "application/x-www-form-urlencoded",
                          "Authorization": "Basic " + basic}, auth=False)
    assert st == 200 and tok["access_token"]


def test_token_errors(cl):
    st, _, b = cl.refresh(rt="unknown")
    assert st == 400 and b == {"error": "invalid_grant",
                               "error_description": "Token has been expired or revoked."}
    st, _, b = cl.refresh(secret="wrong")
    assert st == 401 and b["error"] == "invalid_client"
    st, _, b = cl.refresh(cid="nobody")
    assert st == 401 and b["error"] == "invalid_client"
    st, _, b = cl.json("POST", "/token", "grant_type=password",
                       {"Content-Type": "application/x-www-form-urlencoded"}, auth=False)
    assert st == 400 and b["error"] == "unsupported_grant_type"
    st, _, b = cl.json("POST", "/token",
                       "grant_type=refresh_token&client_id=%s&client_secret=%s" % (CID, SECRET),
                       {"Content-Type": "application/x-www-form-urlencoded"}, auth=False)
    assert st == 400 and b["error"] == "invalid_request"


def test_revoke_refresh_token(cl):
    st, b = cl.ctl("POST", "/tokens/revoke", {"refresh_token": RT})
    assert st == 200 and b["revoked"]
    st, _, b = cl.refresh()
    assert st == 400 and b["error"] == "invalid_grant"
    # the access tokens minted from it die with it
    st, h, b = cl.api("profile")
    assert st == 401
    google_error(b, 401, "authError")


def test_missing_and_invalid_access_token(cl):
    st, h, b = cl.json("GET", "/gmail/v1/users/me/profile", auth=False)
    assert st == 401
    google_error(b, 401, "required")
    assert h["www-authenticate"].startswith("Bearer realm=")
    st, h, b = cl.json("GET", "/gmail/v1/users/me/profile",
                       headers={"Authorization": "Bearer ya29.nope"})
    assert st == 401
    google_error(b, 401, "authError")
    assert b["error"]["errors"][0]["location"] == "Authorization"
    assert 'error="invalid_token"' in h["www-authenticate"]


def test_expire_access_tokens_via_control_and_ttl(cl):
    assert cl.api("profile")[0] == 200
    st, b = cl.ctl("POST", "/tokens/expire", {"email": USER})
    assert st == 200 and b["expired"] >= 1
    assert cl.api("profile")[0] == 401
    # 3 s: the call right after the login must land within the TTL on a loaded machine
    cl.ctl("POST", "/config", {"access_token_ttl_s": 3})
    tok = cl.login()
    assert tok["expires_in"] == 3
    assert cl.api("profile")[0] == 200
    time.sleep(3.2)
    assert cl.api("profile")[0] == 401
    cl.login()
    assert cl.api("profile")[0] == 200


def test_user_id_email_and_delegation(cl):
    st, _, b = cl.json("GET", "/gmail/v1/users/%s/profile" % USER)
    assert st == 200 and b["emailAddress"] == USER
    st, _, b = cl.json("GET", "/gmail/v1/users/other@example.com/profile")
    assert st == 403
    google_error(b, 403, "forbidden")


def test_unknown_route_is_google_html_404(cl):
    st, h, data = cl.request("GET", "/gmail/v1/users/me/nothing-here")
    assert st == 404 and h["content-type"].startswith("text/html")
    assert b"That\xe2\x80\x99s an error" in data


# ---------------------------------------------------------------------------
# profile, messages.list
# ---------------------------------------------------------------------------

def test_profile_and_history_id_advances(cl):
    st, _, p0 = cl.api("profile")
    assert st == 200
    assert p0 == {"emailAddress": USER, "messagesTotal": 0, "threadsTotal": 0,
                  "historyId": p0["historyId"]}
    add_raw(cl, make_raw("one"))
    st, _, p1 = cl.api("profile")
    assert p1["messagesTotal"] == 1 and p1["threadsTotal"] == 1
    assert int(p1["historyId"]) > int(p0["historyId"])


def test_list_empty_shape(cl):
    st, _, b = cl.api("messages")
    assert st == 200 and b == {"resultSizeEstimate": 0}


def test_list_newest_first_paging_and_limits(cl):
    st, g = cl.ctl("POST", "/users/%s/messages/generate" % USER,
                   {"count": 1234, "size": 800, "start": 1700000000, "interval_s": 60})
    assert st == 200 and g["count"] == 1234
    seen, tok, pages = [], None, 0
    while True:
        params = {"maxResults": 500}
        if tok:
            params["pageToken"] = tok
        st, _, b = cl.api("messages", **params)
        assert st == 200
        assert len(b["messages"]) <= 500
        seen += [m["id"] for m in b["messages"]]
        pages += 1
        tok = b.get("nextPageToken")
        if not tok:
            break
    assert pages == 3 and len(seen) == 1234 and len(set(seen)) == 1234
    # newest first: ids of generated messages were created oldest first
    assert seen == list(reversed(g["ids"])) if "ids" in g else True
    st, _, b = cl.api("messages")
    assert len(b["messages"]) == 100 and b["resultSizeEstimate"] == 1234  # default page
    st, _, b = cl.api("messages", maxResults=100000)
    assert len(b["messages"]) == 500  # capped
    st, _, b = cl.api("messages", maxResults="x")
    assert st == 400
    st, _, b = cl.api("messages", pageToken="%%%")
    assert st == 400


def test_list_internal_dates_descending(cl):
    cl.ctl("POST", "/users/%s/messages/generate" % USER,
           {"count": 50, "start": 1700000000, "interval_s": 10})
    add_raw(cl, make_raw("old", "Tue, 01 Jan 2019 00:00:00 +0000"))
    st, _, b = cl.api("messages", maxResults=500)
    dates = []
    for m in b["messages"]:
        st, _, full = cl.api("messages/" + m["id"], format="minimal")
        dates.append(int(full["internalDate"]))
    assert dates == sorted(dates, reverse=True)


def test_list_label_filters_and_spam_trash(cl):
    a = add_raw(cl, make_raw("a"), labelIds=["INBOX"])
    b_ = add_raw(cl, make_raw("b"), labelIds=["INBOX", "UNREAD"])
    c = add_raw(cl, make_raw("c"), labelIds=["SPAM"])
    d = add_raw(cl, make_raw("d"), labelIds=["TRASH", "Label_7"])
    ids = lambda r: {m["id"] for m in r.get("messages", [])}  # noqa: E731
    st, _, r = cl.api("messages")
    assert ids(r) == {a["id"], b_["id"]}
    st, _, r = cl.api("messages", includeSpamTrash="true")
    assert ids(r) == {a["id"], b_["id"], c["id"], d["id"]}
    st, _, r = cl.api("messages", labelIds=["INBOX", "UNREAD"])
    assert ids(r) == {b_["id"]}
    st, _, r = cl.api("messages", labelIds="SPAM")
    assert ids(r) == {c["id"]}
    st, _, r = cl.api("messages", q="label:Label_7", includeSpamTrash="true")
    assert ids(r) == {d["id"]}
    st, _, r = cl.api("messages", q="in:inbox is:unread")
    assert ids(r) == {b_["id"]}


def test_list_query_after_before(cl):
    # epoch seconds: after is inclusive, before exclusive (internalDate)
    day = 86400
    base = 1704067200  # 2024-01-01T00:00:00Z
    for i in range(10):
        add_raw(cl, make_raw("m%d" % i), internalDate=(base + i * day) * 1000)
    ids = lambda r: len(r.get("messages", []))  # noqa: E731
    st, _, r = cl.api("messages", q="after:%d before:%d" % (base + 2 * day, base + 5 * day))
    assert st == 200 and ids(r) == 3
    st, _, r = cl.api("messages", q="after:%d" % (base + 9 * day))
    assert ids(r) == 1
    # dates are midnight Pacific time: 2024/01/03 00:00 PST == 2024-01-03T08:00Z, so the
    # message at 2024-01-03T00:00Z is before it
    st, _, r = cl.api("messages", q="after:2024/01/03 before:2024/01/06")
    assert ids(r) == 3  # 01-04, 01-05, 01-06 00:00Z (< 01-06 08:00Z)
    st, _, r = cl.api("messages", q="from:bob")
    assert st == 400  # unsupported terms fail loudly


def test_query_parser_pacific_dates():
    after, before, *_ = gmail_emulator.parse_query("after:2024/07/01 before:2024-12-01", 0)
    assert after == int(datetime.fromisoformat("2024-07-01T00:00:00-07:00").timestamp() * 1000)
    assert before == int(datetime.fromisoformat("2024-12-01T00:00:00-08:00").timestamp() * 1000)


# ---------------------------------------------------------------------------
# messages.get, attachments.get
# ---------------------------------------------------------------------------

def test_get_formats_roundtrip(cl):
    raw = make_raw("fmt", attach=b"%PDF-1.4 binary \x00\x01\x02" * 50)
    m = add_raw(cl, raw, labelIds=["INBOX", "Label_1"])
    st, _, r = cl.api("messages/" + m["id"], format="raw")
    assert st == 200
    assert b64d(r["raw"]) == raw
    # URL-safe alphabet with "=" padding (Google's own samples decode it with
    # base64.urlsafe_b64decode, which requires the padding)
    assert "+" not in r["raw"] and "/" not in r["raw"] and len(r["raw"]) % 4 == 0
    assert set(r) == {"id", "threadId", "labelIds", "snippet", "sizeEstimate", "historyId",
                      "internalDate", "raw"}
    assert r["sizeEstimate"] == len(raw)
    assert r["internalDate"] == str(1704103200000)  # from the Date header
    assert r["labelIds"] == ["INBOX", "Label_1"]
    assert r["snippet"].startswith("Text of fmt")
    st, _, r = cl.api("messages/" + m["id"], format="minimal")
    assert "payload" not in r and "raw" not in r
    st, _, r = cl.api("messages/" + m["id"], format="metadata", metadataHeaders=["subject"])
    assert r["payload"]["headers"] == [{"name": "Subject", "value": "fmt"}]
    st, _, r = cl.api("messages/" + m["id"])  # default format=full
    p = r["payload"]
    assert p["partId"] == "" and p["mimeType"] == "multipart/mixed"
    text, att = p["parts"]
    assert text["partId"] == "0" and b64d(text["body"]["data"]).startswith(b"Text of fmt")
    assert att["filename"] == "a.pdf" and "data" not in att["body"]
    assert att["body"]["size"] == 50 * 19
    st, _, a = cl.api("messages/%s/attachments/%s" % (m["id"], att["body"]["attachmentId"]))
    assert st == 200 and a["size"] == 950
    assert b64d(a["data"]) == b"%PDF-1.4 binary \x00\x01\x02" * 50
    st, _, b = cl.api("messages/%s/attachments/%s" % (m["id"], "garbage"))
    assert st == 400


def test_get_errors(cl):
    st, _, b = cl.api("messages/0123456789abcdef")
    assert st == 404
    google_error(b, 404, "notFound")
    assert b["error"]["message"] == "Requested entity was not found."
    st, _, b = cl.api("messages/not-hex!")
    assert st == 400
    m = add_raw(cl, make_raw("x"))
    st, _, b = cl.api("messages/" + m["id"], format="bogus")
    assert st == 400
    google_error(b, 400, "invalidArgument")


def test_get_fields_and_pretty_print(cl):
    m = add_raw(cl, make_raw("f"))
    st, _, data = cl.request("GET", "/gmail/v1/users/me/messages/%s?format=raw&fields=id,raw"
                             "&prettyPrint=false" % m["id"])
    assert st == 200 and b"\n" not in data
    assert set(json.loads(data)) == {"id", "raw"}
    st, _, b = cl.api("messages", fields="messages(id),nextPageToken")
    assert b == {"messages": [{"id": m["id"]}]}


def test_generated_messages_are_valid_mime(cl):
    st, g = cl.ctl("POST", "/users/%s/messages/generate" % USER,
                   {"count": 3, "size": 20000, "attachments": 2, "attachment_size": 5000,
                    "thread_size": 3, "labelIds": ["INBOX"]})
    st, _, r = cl.api("messages/" + g["ids"][1], format="raw")
    raw = b64d(r["raw"])
    assert abs(len(raw) - 20000) < 200 and r["sizeEstimate"] == len(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    atts = [p for p in msg.iter_attachments()]
    assert len(atts) == 2 and all(len(p.get_content()) == 5000 for p in atts)
    assert r["threadId"] == g["ids"][0]
    st, _, p = cl.api("profile")
    assert p["messagesTotal"] == 3 and p["threadsTotal"] == 1
    # stable: the same bytes every time
    st, _, r2 = cl.api("messages/" + g["ids"][1], format="raw")
    assert r2["raw"] == r["raw"]


# ---------------------------------------------------------------------------
# history
# ---------------------------------------------------------------------------

def test_history_records_and_types(cl):
    st, _, p = cl.api("profile")
    h0 = p["historyId"]
    m1 = add_raw(cl, make_raw("h1"))
    m2 = add_raw(cl, make_raw("h2"))
    st, r = cl.ctl("POST", "/users/%s/messages/%s/labels" % (USER, m1["id"]),
                   {"add": ["STARRED"], "remove": ["UNREAD"]})
    assert st == 200
    st, r = cl.ctl("DELETE", "/users/%s/messages/%s" % (USER, m2["id"]))
    assert st == 200
    st, _, h = cl.api("history", startHistoryId=h0)
    assert st == 200
    recs = h["history"]
    assert len(recs) == 5
    ids = [int(x["id"]) for x in recs]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] > int(h0)
    assert h["historyId"] == str(ids[-1])
    assert recs[0]["messagesAdded"][0]["message"]["id"] == m1["id"]
    assert recs[0]["messages"] == [{"id": m1["id"], "threadId": m1["threadId"]}]
    assert recs[2]["labelsAdded"][0]["labelIds"] == ["STARRED"]
    assert recs[3]["labelsRemoved"][0]["labelIds"] == ["UNREAD"]
    assert recs[4]["messagesDeleted"][0]["message"]["id"] == m2["id"]
    st, _, h = cl.api("history", startHistoryId=h0, historyTypes="messageAdded")
    assert [x["messagesAdded"][0]["message"]["id"] for x in h["history"]] == [m1["id"],
                                                                               m2["id"]]
    st, _, h = cl.api("history", startHistoryId=h0,
                      historyTypes=["messageDeleted", "labelAdded"])
    assert len(h["history"]) == 2
    st, _, h = cl.api("history", startHistoryId=h0, labelId="STARRED")
    assert len(h["history"]) == 2  # the labelAdded and the labelRemoved (msg now starred)
    st, _, h = cl.api("history", startHistoryId=h0, historyTypes="bogus")
    assert st == 400
    # message historyId: the last change that touched it
    st, _, g = cl.api("messages/" + m1["id"], format="minimal")
    assert g["historyId"] == recs[3]["id"]


def test_history_paging_and_now(cl):
    st, _, p = cl.api("profile")
    h0 = p["historyId"]
    cl.ctl("POST", "/users/%s/messages/generate" % USER, {"count": 25})
    got, tok = [], None
    while True:
        params = {"startHistoryId": h0, "maxResults": 10}
        if tok:
            params["pageToken"] = tok
        st, _, h = cl.api("history", **params)
        got += [x["id"] for x in h.get("history", [])]
        tok = h.get("nextPageToken")
        if not tok:
            break
    assert len(got) == 25 and len(set(got)) == 25
    st, _, p = cl.api("profile")
    st, _, h = cl.api("history", startHistoryId=p["historyId"])
    assert st == 200 and h == {"historyId": p["historyId"]}
    st, _, h = cl.api("history", startHistoryId=str(int(p["historyId"]) + 1000))
    assert st == 200 and h == {"historyId": p["historyId"]}


def test_history_start_required(cl):
    st, _, b = cl.api("history")
    assert st == 400
    google_error(b, 400, "invalidArgument")


def test_history_retention_records_gives_404(cl):
    cl.ctl("POST", "/config", {"history_retention_records": 10})
    st, _, p = cl.api("profile")
    h0 = p["historyId"]
    assert cl.api("history", startHistoryId=h0)[0] == 200
    cl.ctl("POST", "/users/%s/messages/generate" % USER, {"count": 15})
    st, _, b = cl.api("history", startHistoryId=h0)
    assert st == 404
    google_error(b, 404, "notFound")
    st, u = cl.ctl("GET", "/users/" + USER)
    oldest = u["oldestValidStartHistoryId"]
    st, _, h = cl.api("history", startHistoryId=oldest)
    assert st == 200 and len(h["history"]) == 10
    assert cl.api("history", startHistoryId=str(int(oldest) - 1))[0] == 404


def test_history_retention_seconds_and_control_expire(cl):
    # 3 s: the history call right after must land within the retention on a loaded machine
    cl.ctl("POST", "/config", {"history_retention_s": 3})
    st, _, p = cl.api("profile")
    h0 = p["historyId"]
    add_raw(cl, make_raw("t"))
    assert cl.api("history", startHistoryId=h0)[0] == 200
    time.sleep(3.2)
    assert cl.api("history", startHistoryId=h0)[0] == 404
    cl.ctl("POST", "/config", {"history_retention_s": 0})
    st, _, p = cl.api("profile")
    assert cl.api("history", startHistoryId=p["historyId"])[0] == 200
    add_raw(cl, make_raw("u"))
    st, u = cl.ctl("POST", "/users/%s/history/expire" % USER, {})
    assert st == 200
    assert cl.api("history", startHistoryId=p["historyId"])[0] == 404


# ---------------------------------------------------------------------------
# quotas, concurrency, latency
# ---------------------------------------------------------------------------

def test_quota_429_rate_limit(cl):
    m = add_raw(cl, make_raw("q"))
    cl.ctl("POST", "/counters/reset")
    # 10 units at 1 unit/s: up to 1 s between the calls below before a unit comes back
    cl.ctl("POST", "/config", {"quota_units_per_s": 1, "quota_burst_s": 10})
    assert cl.api("messages/" + m["id"], format="minimal")[0] == 200
    assert cl.api("messages/" + m["id"], format="minimal")[0] == 200
    st, h, b = cl.api("messages/" + m["id"], format="minimal")
    assert st == 429
    google_error(b, 429, "userRateLimitExceeded")  # the per-user limit
    assert b["error"]["errors"][0]["domain"] == "usageLimits"
    assert "retry-after" not in h  # Google documents none: a client must not need it
    assert cl.api("profile")[0] == 429  # 1 unit does not fit either... bucket is at ~0
    time.sleep(5.1)
    assert cl.api("messages/" + m["id"], format="minimal")[0] == 200  # refilled 5 units
    st, c = cl.ctl("GET", "/counters")
    assert c["units_spent"] == 15 and c["rate_limited_429"] == 2
    assert c["rate_limited_user"] == 2 and c["rate_limited_project"] == 0
    assert c["by_method"]["gmail.users.messages.get"] == 4
    assert c["units_by_user"][USER] == 15


def test_quota_403_mode(cl):
    # 1 unit refilled every 10 s: the second call comes well within that
    cl.ctl("POST", "/config", {"quota_units_per_s": 0.1, "quota_burst_s": 10, "quota_mode": "403"})
    assert cl.api("profile")[0] == 200
    st, h, b = cl.api("profile")
    assert st == 403
    google_error(b, 403, "userRateLimitExceeded")
    st, c = cl.ctl("GET", "/counters")
    assert c["rate_limited_403"] == 1


def test_quota_retry_after_opt_in(cl):
    cl.ctl("POST", "/config", {"quota_units_per_min": 6, "quota_burst_s": 10,
                               "retry_after": True})
    assert cl.api("profile")[0] == 200
    st, h, b = cl.api("profile")
    assert st == 429 and int(h["retry-after"]) >= 1


def test_quota_per_minute_window(cl):
    """With a minute's budget allowed at once (burst 60 s), the sliding window of the
    last 60 s still holds the per-minute limit."""
    cl.ctl("POST", "/config", {"quota_units_per_min": 5, "quota_burst_s": 60})
    for _ in range(5):
        assert cl.api("profile")[0] == 200  # the whole minute's budget in one go
    st, _, b = cl.api("profile")
    assert st == 429
    google_error(b, 429, "userRateLimitExceeded")


def test_quota_per_project(cl):
    """Users of one project share its per-minute limit; the answer says rateLimitExceeded
    (the project's), not userRateLimitExceeded, and other projects are not affected."""
    st, p = cl.ctl("POST", "/projects/proj-a/config",
                   {"client_ids": [CID], "quota_units_per_min": 3, "quota_burst_s": 60})
    assert st == 200 and p["effective"]["quota_units_per_min"] == 3 and p["client_ids"] == [CID]
    cl.ctl("POST", "/users", {"email": "bob@example.com", "refresh_token": "rt-bob",
                              "client_id": CID, "client_secret": SECRET})
    cl.ctl("POST", "/users", {"email": "carol@example.com", "refresh_token": "rt-carol",
                              "client_id": "other-client", "client_secret": SECRET})
    bob, carol = Client(cl.srv), Client(cl.srv)
    bob.token = bob.refresh(rt="rt-bob")[2]["access_token"]
    carol.token = carol.refresh(rt="rt-carol", cid="other-client")[2]["access_token"]
    assert cl.api("profile")[0] == 200
    assert bob.api("profile")[0] == 200
    assert cl.api("profile")[0] == 200
    st, h, b = bob.api("profile")
    assert st == 403 and "retry-after" not in h
    google_error(b, 403, "rateLimitExceeded")
    assert carol.api("profile")[0] == 200  # a project of its own
    st, c = cl.ctl("GET", "/counters")
    assert c["rate_limited_project"] == 1 and c["rate_limited_user"] == 0
    assert c["units_by_project"] == {"proj-a": 3, "other-client": 1}
    assert c["rate_limited_by_project"] == {"proj-a": 1}
    st, p = cl.ctl("GET", "/projects/proj-a")
    assert p["units_last_minute"] == 3 and p["units_total"] == 3
    assert cl.ctl("POST", "/projects/proj-a/config", {"bogus": 1})[0] == 400


def test_quota_is_per_user(cl):
    cl.ctl("POST", "/users", {"email": "bob@example.com", "refresh_token": "rt-bob",
                              "client_id": CID, "client_secret": SECRET})
    cl.ctl("POST", "/config", {"quota_units_per_s": 0.1, "quota_burst_s": 10})  # 1 unit per 10 s
    assert cl.api("profile")[0] == 200
    assert cl.api("profile")[0] == 429
    bob = Client(cl.srv)
    st, _, t = bob.refresh(rt="rt-bob")
    bob.token = t["access_token"]
    st, _, p = bob.api("profile")
    assert st == 200 and p["emailAddress"] == "bob@example.com"


def test_concurrency_limit_and_latency(cl):
    cl.ctl("POST", "/config", {"latency_ms": 300, "concurrency_limit": 2})
    cl.ctl("POST", "/counters/reset")
    t0 = time.monotonic()
    with ThreadPoolExecutor(6) as ex:
        res = list(ex.map(lambda _: cl.api("profile"), range(6)))
    took = time.monotonic() - t0
    codes = sorted(r[0] for r in res)
    assert codes.count(200) >= 2 and codes.count(429) >= 1, codes
    rej = [r for r in res if r[0] == 429][0]
    assert rej[2]["error"]["message"] == "Too many concurrent requests for user"
    assert took < 30  # a hang guard; max_concurrency_by_user == 2 below shows it concurrent
    st, c = cl.ctl("GET", "/counters")
    assert c["max_concurrency_by_user"][USER] == 2
    assert c["concurrency_rejected"] == codes.count(429)


def test_latency_does_not_block_other_users(cl):
    users = []
    for i in range(8):
        addr = "u%d@example.com" % i
        cl.ctl("POST", "/users", {"email": addr, "refresh_token": "rt%d" % i,
                                  "client_id": CID, "client_secret": SECRET})
        c = Client(cl.srv)
        st, _, t = c.refresh(rt="rt%d" % i)
        c.token = t["access_token"]
        users.append(c)
    cl.ctl("POST", "/config", {"latency_ms": 400})
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as ex:
        res = list(ex.map(lambda i: users[i % 8].api("profile"), range(16)))
    took = time.monotonic() - t0
    assert all(r[0] == 200 for r in res)
    assert 0.4 <= took < 6.0  # one at a time would take 16 x 0.4 = 6.4 s


# ---------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------

def test_fault_status_then_recovers(cl):
    st, f = cl.ctl("POST", "/faults", {"kind": "status", "status": 503, "count": 2,
                                       "match": "/profile"})
    assert st == 200
    assert cl.api("messages")[0] == 200  # does not match
    st, _, b = cl.api("profile")
    assert st == 503
    google_error(b, 503, "backendError")
    st, _, b = cl.api("profile")
    assert st == 503
    assert cl.api("profile")[0] == 200
    cl.ctl("POST", "/faults", {"kind": "status", "status": 500})
    st, _, b = cl.api("profile")
    assert st == 500 and b["error"]["message"] == "Backend Error"
    st, c = cl.ctl("GET", "/counters")
    assert c["faults_injected"] == 3


def test_fault_connection_reset(cl):
    cl.ctl("POST", "/faults", {"kind": "reset"})
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, ssl.SSLError,
                        http.client.BadStatusLine)):
        cl.api("profile")
    assert cl.api("profile")[0] == 200


def test_fault_truncated_body(cl):
    cl.ctl("POST", "/faults", {"kind": "truncate"})
    with pytest.raises((http.client.IncompleteRead, ConnectionError, ssl.SSLError)):
        cl.api("profile")
    assert cl.api("profile")[0] == 200


def test_fault_malformed_json(cl):
    cl.ctl("POST", "/faults", {"kind": "malformed"})
    st, _, data = cl.request("GET", "/gmail/v1/users/me/profile")
    assert st == 200
    with pytest.raises(ValueError):
        json.loads(data)
    assert cl.api("profile")[0] == 200


def test_fault_on_token_endpoint_and_delay(cl):
    cl.ctl("POST", "/faults", {"kind": "status", "status": 500, "match": "/token"})
    st, _, b = cl.refresh()
    assert st == 500
    cl.ctl("POST", "/faults", {"kind": "delay", "delay_ms": 300})
    t0 = time.monotonic()
    assert cl.api("profile")[0] == 200
    assert time.monotonic() - t0 >= 0.3
    st, f = cl.ctl("POST", "/faults", {"kind": "explode"})
    assert st == 400


def bob_client(cl, rt="rt-bob", **user):
    spec = {"email": "bob@example.com", "refresh_token": rt, "client_id": CID,
            "client_secret": SECRET}
    spec.update(user)
    st, b = cl.ctl("POST", "/users", spec)
    assert st == 200, b
    bob = Client(cl.srv)
    st, _, t = bob.refresh(rt=rt)
    assert st == 200, t
    bob.token = t["access_token"]
    return bob


def test_fault_per_user(cl):
    """A fault with "user" hits only requests acting for that mailbox (its bearer or
    refresh token, or its address in the path); other users' requests pass untouched."""
    bob = bob_client(cl)
    BOB = "bob@example.com"
    st, f = cl.ctl("POST", "/faults", {"kind": "status", "status": 503, "count": 2,
                                       "match": "/profile", "user": BOB})
    assert st == 200 and f["user"] == BOB
    for _ in range(3):  # alice: never hit, the fault is not consumed
        assert cl.api("profile")[0] == 200
    assert len(cl.ctl("GET", "/faults")[1]["faults"]) == 1
    # no token at all: the user is unknown, so a user's fault does not match either
    st, _, _ = cl.request("GET", "/gmail/v1/users/me/profile", auth=False)
    assert st == 401
    st, _, b = bob.api("profile")
    assert st == 503
    google_error(b, 503, "backendError")
    # an expired token still tells whose request it is
    cl.ctl("POST", "/tokens/expire", {"email": BOB})
    st, _, b = bob.api("profile")
    assert st == 503
    assert bob.api("profile")[0] == 401  # fault used up: now the real answer
    # the token endpoint: the refresh token's owner
    cl.ctl("POST", "/faults", {"kind": "status", "status": 500, "match": "/token", "user": BOB})
    assert cl.refresh()[0] == 200
    assert bob.refresh(rt="rt-bob")[0] == 500
    assert bob.refresh(rt="rt-bob")[0] == 200
    # batch parts: the part's (outer) bearer token
    bob.token = bob.refresh(rt="rt-bob")[2]["access_token"]
    cl.ctl("POST", "/faults", {"kind": "status", "status": 503, "in_batch": True, "user": BOB})
    hdr = {"Content-Type": "multipart/mixed; boundary=batch_foobarbaz"}
    body = batch_body(["GET /gmail/v1/users/me/profile"] * 2)
    st, h, data = cl.request("POST", "/batch/gmail/v1", body, hdr)
    assert [p[1] for p in parse_batch(h, data)] == [200, 200]
    st, h, data = bob.request("POST", "/batch/gmail/v1", body, hdr)
    assert [p[1] for p in parse_batch(h, data)] == [503, 200]
    st, c = cl.ctl("GET", "/counters")
    assert c["faults_injected"] == 4


def test_faults_listed_and_cleared_per_user(cl):
    BOB = "bob@example.com"
    bob_client(cl)
    cl.ctl("POST", "/faults", {"kind": "delay", "delay_ms": 1, "count": 5, "user": USER})
    cl.ctl("POST", "/faults", {"kind": "delay", "delay_ms": 1, "count": 5, "user": BOB})
    cl.ctl("POST", "/faults", {"kind": "delay", "delay_ms": 1, "count": 5})
    assert len(cl.ctl("GET", "/faults")[1]["faults"]) == 3
    st, b = cl.ctl("GET", "/faults?user=" + urllib.parse.quote(BOB))
    assert st == 200 and [f["user"] for f in b["faults"]] == [BOB]
    assert cl.ctl("DELETE", "/faults?user=" + urllib.parse.quote(BOB))[0] == 200
    assert sorted(f["user"] for f in cl.ctl("GET", "/faults")[1]["faults"]) == ["", USER]
    assert cl.ctl("DELETE", "/faults", {"user": USER})[0] == 200  # the body form
    assert [f["user"] for f in cl.ctl("GET", "/faults")[1]["faults"]] == [""]
    # deleting a user drops its faults
    cl.ctl("POST", "/faults", {"kind": "delay", "delay_ms": 1, "user": BOB})
    cl.ctl("DELETE", "/users/" + BOB)
    assert [f["user"] for f in cl.ctl("GET", "/faults")[1]["faults"]] == [""]
    cl.ctl("DELETE", "/faults")  # no user: all of them
    assert cl.ctl("GET", "/faults")[1] == {"faults": []}


def test_user_config_overrides(cl):
    """Latency, quota, concurrency and token TTL per user; the global /config and other
    users are untouched."""
    BOB = "bob@example.com"
    # 1.5 s for bob: alice's call (no latency) stays well under it on a loaded machine
    bob = bob_client(cl, config={"latency_ms": 1500})
    st, b = cl.ctl("GET", "/users/%s/config" % BOB)
    assert st == 200 and b["overrides"] == {"latency_ms": 1500.0}
    assert b["effective"]["latency_ms"] == 1500.0 and b["effective"]["quota_units_per_min"] == 0
    assert cl.ctl("GET", "/config")[1]["latency_ms"] == 0
    t0 = time.monotonic()
    assert cl.api("profile")[0] == 200
    assert time.monotonic() - t0 < 1.0
    t0 = time.monotonic()
    assert bob.api("profile")[0] == 200
    assert time.monotonic() - t0 >= 1.5
    t0 = time.monotonic()
    assert bob.refresh(rt="rt-bob")[0] == 200  # the token endpoint too
    assert time.monotonic() - t0 >= 1.5
    # quota and concurrency for bob only; null drops an override (1 unit per 10 s: the
    # second call comes well within that)
    st, b = cl.ctl("POST", "/users/%s/config" % BOB,
                   {"latency_ms": None, "quota_units_per_s": 0.1, "quota_burst_s": 10,
                    "quota_mode": "403"})
    assert st == 200 and b["overrides"] == {"quota_units_per_min": 6.0, "quota_burst_s": 10.0,
                                            "quota_mode": "403"}
    assert bob.api("profile")[0] == 200
    st, _, e = bob.api("profile")
    assert st == 403
    google_error(e, 403, "userRateLimitExceeded")
    for _ in range(3):
        assert cl.api("profile")[0] == 200  # alice: quota still off
    # 1.5 s: the three calls overlap even when a loaded machine starts them slowly
    cl.ctl("POST", "/users/%s/config" % BOB, {"quota_units_per_s": None, "quota_mode": None,
                                              "quota_burst_s": None,
                                              "concurrency_limit": 1, "latency_ms": 1500})
    with ThreadPoolExecutor(3) as ex:
        codes = sorted(r[0] for r in ex.map(lambda _: bob.api("profile"), range(3)))
    assert codes.count(200) >= 1 and codes.count(429) >= 1, codes
    st, c = cl.ctl("GET", "/counters")
    assert c["max_concurrency_by_user"][BOB] == 1
    cl.ctl("POST", "/users/%s/config" % BOB, {"concurrency_limit": None, "latency_ms": None,
                                              "access_token_ttl_s": 1})
    st, _, t = bob.refresh(rt="rt-bob")
    assert t["expires_in"] == 1
    assert cl.refresh()[2]["expires_in"] == 3599
    # bad keys and values: 400, nothing changed
    assert cl.ctl("POST", "/users/%s/config" % BOB, {"history_id_gap": 2})[0] == 400
    assert cl.ctl("POST", "/users/%s/config" % BOB, {"latency_ms": "x"})[0] == 400
    assert cl.ctl("POST", "/users/%s/config" % BOB, {"quota_mode": "500"})[0] == 400
    assert cl.ctl("GET", "/users/%s/config" % BOB)[1]["overrides"] == {"access_token_ttl_s": 1}
    assert cl.ctl("POST", "/users", {"email": "c@example.com", "config": {"nope": 1}})[0] == 400
    assert cl.ctl("GET", "/users/c@example.com")[0] == 404  # not created half-way
    assert cl.ctl("GET", "/users/nobody@example.com/config")[0] == 404


def test_token_requests_counted_per_client(cl):
    cl.ctl("POST", "/counters/reset")
    cl.refresh()
    cl.refresh(rt="no-such-token")
    cl.refresh(cid="client-2", secret="x")
    st, c = cl.ctl("GET", "/counters")
    assert c["token_requests"] == 3
    assert c["token_requests_by_client"] == {CID: 2, "client-2": 1}


# ---------------------------------------------------------------------------
# batch
# ---------------------------------------------------------------------------

def batch_body(calls, boundary="batch_foobarbaz"):
    out = []
    for i, c in enumerate(calls):
        out.append("--%s\r\nContent-Type: application/http\r\nContent-ID: <item%d>\r\n\r\n"
                   "%s\r\n\r\n" % (boundary, i + 1, c))
    out.append("--%s--\r\n" % boundary)
    return "".join(out).encode()


def parse_batch(h, data):
    ctype = h["content-type"]
    assert ctype.startswith("multipart/mixed; boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    parts = []
    for chunk in data.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, rest = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        cid = [ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n")
               if ln.lower().startswith(b"content-id")]
        status_line, _, rest2 = rest.partition(b"\r\n")
        _, _, body = rest2.partition(b"\r\n\r\n")
        parts.append((cid[0] if cid else None, int(status_line.split()[1]),
                      json.loads(body.rstrip(b"\r\n")) if body.strip() else None))
    return parts


def test_batch_get_messages(cl):
    m1 = add_raw(cl, make_raw("b1"))
    m2 = add_raw(cl, make_raw("b2"))
    cl.ctl("POST", "/counters/reset")
    calls = ["GET /gmail/v1/users/me/messages/%s?format=raw" % m1["id"],
             "GET /gmail/v1/users/me/messages/%s?format=minimal" % m2["id"],
             "GET /gmail/v1/users/me/messages/0000000000000001",
             "GET https://gmail.googleapis.com/gmail/v1/users/me/profile"]
    st, h, data = cl.request("POST", "/batch/gmail/v1", batch_body(calls),
                             {"Content-Type": "multipart/mixed; boundary=batch_foobarbaz"})
    assert st == 200
    parts = parse_batch(h, data)
    assert [p[0] for p in parts] == ["<response-item1>", "<response-item2>",
                                     "<response-item3>", "<response-item4>"]
    assert [p[1] for p in parts] == [200, 200, 404, 400]
    assert b64d(parts[0][2]["raw"]) == make_raw("b1")
    assert parts[1][2]["id"] == m2["id"]
    google_error(parts[2][2], 404, "notFound")
    st, c = cl.ctl("GET", "/counters")
    assert c["units_spent"] == 15 and c["batch_calls"] == 4 and c["batch_requests"] == 1


def test_batch_inner_auth_quota_and_limit(cl):
    m1 = add_raw(cl, make_raw("b1"))
    # inner Authorization overrides; without any, each part is a 401
    calls = ["GET /gmail/v1/users/me/profile\r\nAuthorization: Bearer " + cl.token,
             "GET /gmail/v1/users/me/profile"]
    st, h, data = cl.request("POST", "/batch/gmail/v1", batch_body(calls),
                             {"Content-Type": "multipart/mixed; boundary=batch_foobarbaz"},
                             auth=False)
    assert [p[1] for p in parse_batch(h, data)] == [200, 401]
    # each inner call pays its own units: 3 gets = 15 units > 12/s bucket
    cl.ctl("POST", "/config", {"quota_units_per_s": 12})
    calls = ["GET /gmail/v1/users/me/messages/%s?format=minimal" % m1["id"]] * 3
    st, h, data = cl.request("POST", "/batch/gmail/v1", batch_body(calls),
                             {"Content-Type": "multipart/mixed; boundary=batch_foobarbaz"})
    codes = [p[1] for p in parse_batch(h, data)]
    assert codes == [200, 200, 429]
    cl.ctl("POST", "/config", {"quota_units_per_s": 0})
    st, h, data = cl.request("POST", "/batch/gmail/v1",
                             batch_body(["GET /gmail/v1/users/me/profile"] * 101),
                             {"Content-Type": "multipart/mixed; boundary=batch_foobarbaz"})
    assert st == 400
    google_error(json.loads(data), 400, "badRequest")
    st, h, data = cl.request("POST", "/batch/gmail/v1", b"{}",
                             {"Content-Type": "application/json"})
    assert st == 400


def test_batch_inner_fault(cl):
    cl.ctl("POST", "/faults", {"kind": "status", "status": 503, "in_batch": True})
    st, h, data = cl.request("POST", "/batch/gmail/v1",
                             batch_body(["GET /gmail/v1/users/me/profile"] * 2),
                             {"Content-Type": "multipart/mixed; boundary=batch_foobarbaz"})
    assert st == 200
    assert [p[1] for p in parse_batch(h, data)] == [503, 200]


# ---------------------------------------------------------------------------
# mailbox changes: trash, untrash, delete, modify, batchModify, labels.create
# ---------------------------------------------------------------------------

SCOPE_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
SCOPE_FULL = "https://mail.google.com/"


def scoped_client(cl, scope, rt=None):
    """A client for USER whose token carries `scope` (the default user's is readonly)."""
    rt = rt or "rt-alice-" + str(abs(hash(scope)))
    st, b = cl.ctl("POST", "/tokens/add", {"email": USER, "refresh_token": rt,
                                           "client_id": CID, "scope": scope})
    assert st == 200, b
    c = Client(cl.srv)
    st, _, t = c.refresh(rt=rt)
    assert st == 200 and t["scope"] == scope, t
    c.token = t["access_token"]
    return c


def post(c, path, obj=None, **params):
    q = urllib.parse.urlencode(params, doseq=True)
    body = json.dumps(obj).encode() if obj is not None else None
    return c.json("POST", "/gmail/v1/users/me/" + path + ("?" + q if q else ""), body,
                  {"Content-Type": "application/json"} if body is not None else None)


def history_since(c, h0, **params):
    st, _, h = c.api("history", startHistoryId=h0, **params)
    assert st == 200, h
    return h.get("history", []), h["historyId"]


def test_healthz_lists_modify_feature(server):
    st, _, body = Client(server).json("GET", "/healthz", auth=False)
    assert st == 200 and "modify" in body["features"]


def test_write_methods_need_their_scopes(cl):
    m = add_raw(cl, make_raw("s1"))
    st, _, p0 = cl.api("profile")
    # the default token is gmail.readonly: every write answers 403, nothing changes
    for method, path, body in (("POST", "messages/%s/trash" % m["id"], None),
                               ("POST", "messages/%s/untrash" % m["id"], None),
                               ("POST", "messages/%s/modify" % m["id"], {"addLabelIds": ["STARRED"]}),
                               ("POST", "messages/batchModify", {"ids": [m["id"]]}),
                               ("DELETE", "messages/" + m["id"], None),
                               ("POST", "labels", {"name": "X"})):
        st, h, b = cl.json(method, "/gmail/v1/users/me/" + path,
                           json.dumps(body).encode() if body else None)
        assert st == 403, (path, b)
        google_error(b, 403, "insufficientPermissions")
        assert b["error"]["message"] == "Request had insufficient authentication scopes."
        assert b["error"]["status"] == "PERMISSION_DENIED"
        assert 'error="insufficient_scope"' in h["www-authenticate"]
    st, _, p1 = cl.api("profile")
    assert p1["historyId"] == p0["historyId"]
    # gmail.modify may trash and relabel but not delete (https://mail.google.com/ only)
    mod = scoped_client(cl, SCOPE_MODIFY)
    st, _, b = mod.json("DELETE", "/gmail/v1/users/me/messages/" + m["id"])
    assert st == 403
    google_error(b, 403, "insufficientPermissions")
    st, _, b = post(mod, "messages/%s/trash" % m["id"])
    assert st == 200, b
    # gmail.labels may create labels only
    lab = scoped_client(cl, "https://www.googleapis.com/auth/gmail.labels", rt="rt-labels")
    st, _, b = post(lab, "labels", {"name": "Receipts"})
    assert st == 200 and b["id"].startswith("Label_")
    st, _, b = post(lab, "messages/%s/untrash" % m["id"])
    assert st == 403


def test_trash_untrash_shapes_history_and_list(cl):
    c = scoped_client(cl, SCOPE_MODIFY)
    m = add_raw(cl, make_raw("t1"), labelIds=["INBOX", "UNREAD"])
    other = add_raw(cl, make_raw("t2"), labelIds=["INBOX"])
    st, _, p0 = c.api("profile")
    h0 = p0["historyId"]
    st, _, b = post(c, "messages/%s/trash" % m["id"])
    assert st == 200
    assert b == {"id": m["id"], "threadId": m["threadId"],
                 "labelIds": ["INBOX", "UNREAD", "TRASH"]}
    st, _, p1 = c.api("profile")
    assert int(p1["historyId"]) > int(h0)
    recs, cur = history_since(c, h0)
    assert cur == p1["historyId"] and len(recs) == 1
    assert recs[0] == {"id": p1["historyId"],
                       "messages": [{"id": m["id"], "threadId": m["threadId"]}],
                       "labelsAdded": [{"message": {"id": m["id"], "threadId": m["threadId"],
                                                    "labelIds": ["INBOX", "UNREAD", "TRASH"]},
                                        "labelIds": ["TRASH"]}]}
    # the trash is left out of messages.list unless asked for
    ids = lambda r: [x["id"] for x in r.get("messages", [])]  # noqa: E731
    st, _, r = c.api("messages")
    assert ids(r) == [other["id"]]
    st, _, r = c.api("messages", includeSpamTrash="true")
    assert set(ids(r)) == {m["id"], other["id"]}
    st, _, r = c.api("messages", labelIds="TRASH")
    assert ids(r) == [m["id"]]
    st, _, r = c.api("messages", q="in:trash")
    assert ids(r) == [m["id"]]
    # a trashed message can still be read; its historyId is the trash record
    st, _, g = c.api("messages/" + m["id"], format="minimal")
    assert st == 200 and g["historyId"] == p1["historyId"] and "TRASH" in g["labelIds"]
    # trashing again changes nothing (no record)
    st, _, b = post(c, "messages/%s/trash" % m["id"])
    assert st == 200 and b["labelIds"].count("TRASH") == 1
    assert len(history_since(c, h0)[0]) == 1
    st, _, b = post(c, "messages/%s/untrash" % m["id"])
    assert st == 200 and b["labelIds"] == ["INBOX", "UNREAD"]
    recs, _ = history_since(c, h0)
    assert len(recs) == 2 and int(recs[1]["id"]) > int(recs[0]["id"])
    assert recs[1]["labelsRemoved"] == [{"message": {"id": m["id"], "threadId": m["threadId"],
                                                     "labelIds": ["INBOX", "UNREAD"]},
                                         "labelIds": ["TRASH"]}]
    st, _, r = c.api("messages")
    assert set(ids(r)) == {m["id"], other["id"]}
    # unknown / malformed ids
    st, _, b = post(c, "messages/0000000000000001/trash")
    assert st == 404
    google_error(b, 404, "notFound")
    st, _, b = post(c, "messages/not-hex/untrash")
    assert st == 400


def test_delete_is_permanent_with_message_deleted_record(cl):
    c = scoped_client(cl, SCOPE_FULL)
    m = add_raw(cl, make_raw("d1"), labelIds=["INBOX", "Label_9"])
    keep = add_raw(cl, make_raw("d2"))
    st, _, p0 = c.api("profile")
    st, h, data = c.request("DELETE", "/gmail/v1/users/me/messages/" + m["id"])
    assert st == 204 and data == b""
    st, _, b = c.api("messages/" + m["id"])
    assert st == 404
    st, _, p1 = c.api("profile")
    assert p1["messagesTotal"] == p0["messagesTotal"] - 1
    assert int(p1["historyId"]) > int(p0["historyId"])
    recs, _ = history_since(c, p0["historyId"])
    assert recs == [{"id": p1["historyId"],
                     "messages": [{"id": m["id"], "threadId": m["threadId"]}],
                     "messagesDeleted": [{"message": {"id": m["id"], "threadId": m["threadId"],
                                                      "labelIds": ["INBOX", "Label_9"]}}]}]
    # historyTypes filters (repeatable); labelId matches the deleted message's labels
    assert len(history_since(c, p0["historyId"], historyTypes="messageDeleted")[0]) == 1
    assert history_since(c, p0["historyId"], historyTypes=["labelAdded", "labelRemoved"])[0] == []
    assert len(history_since(c, p0["historyId"], labelId="Label_9")[0]) == 1
    assert history_since(c, p0["historyId"], labelId="STARRED")[0] == []
    st, _, b = c.json("DELETE", "/gmail/v1/users/me/messages/" + m["id"])
    assert st == 404
    google_error(b, 404, "notFound")
    st, _, r = c.api("messages", includeSpamTrash="true")
    assert [x["id"] for x in r["messages"]] == [keep["id"]]
    # a delete costs 10 units
    cl.ctl("POST", "/counters/reset")
    c.request("DELETE", "/gmail/v1/users/me/messages/" + keep["id"])
    st, cnt = cl.ctl("GET", "/counters")
    assert cnt["units_by_user"][USER] == 10
    assert cnt["by_method"] == {"gmail.users.messages.delete": 1}



def test_history_follows_a_message_out_of_its_label(cl):
    """What change tracking reads: every record of the mailbox (no labelId) keeps
    following a message that left a label (its labelsRemoved with the labels
    left, then its messagesDeleted); labelId=INBOX drops the deletion of a
    message no longer in INBOX. An empty labelIds is left out (proto3 JSON)."""
    c = scoped_client(cl, SCOPE_FULL)
    m = add_raw(cl, make_raw("o1"), labelIds=["INBOX"])
    st, _, p0 = c.api("profile")
    st, _, r = post(c, "messages/%s/modify" % m["id"], {"removeLabelIds": ["INBOX"]})
    assert st == 200 and "labelIds" not in r
    st, _, g = c.api("messages/" + m["id"], format="minimal", fields="id,labelIds,historyId")
    assert st == 200 and "labelIds" not in g and int(g["historyId"]) > int(p0["historyId"])
    st, _, _ = c.request("DELETE", "/gmail/v1/users/me/messages/" + m["id"])
    assert st == 204
    types = ["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
    recs, _ = history_since(c, p0["historyId"], historyTypes=types)
    assert [sorted(k for k in x if k not in ("id", "messages")) for x in recs] == \
        [["labelsRemoved"], ["messagesDeleted"]]
    assert recs[0]["labelsRemoved"] == [{"message": {"id": m["id"], "threadId": m["threadId"]},
                                         "labelIds": ["INBOX"]}]
    assert recs[1]["messagesDeleted"] == [{"message": {"id": m["id"],
                                                       "threadId": m["threadId"]}}]
    # filtered by INBOX: the removal of INBOX is there, the later deletion is not
    recs, _ = history_since(c, p0["historyId"], historyTypes=types, labelId="INBOX")
    assert [sorted(k for k in x if k not in ("id", "messages")) for x in recs] == \
        [["labelsRemoved"]]


def test_trash_untrash_history_carries_the_full_labels(cl):
    """messages.trash / untrash: labelsAdded / labelsRemoved TRASH whose message
    carries its whole labelIds after the change (what a labels change sends)."""
    c = scoped_client(cl, SCOPE_MODIFY)
    m = add_raw(cl, make_raw("t9"), labelIds=["INBOX", "STARRED"])
    st, _, p0 = c.api("profile")
    assert post(c, "messages/%s/trash" % m["id"])[0] == 200
    assert post(c, "messages/%s/untrash" % m["id"])[0] == 200
    recs, _ = history_since(c, p0["historyId"], historyTypes=["labelAdded", "labelRemoved"])
    assert recs[0]["labelsAdded"][0]["message"]["labelIds"] == ["INBOX", "STARRED", "TRASH"]
    assert recs[0]["labelsAdded"][0]["labelIds"] == ["TRASH"]
    assert recs[1]["labelsRemoved"][0]["message"]["labelIds"] == ["INBOX", "STARRED"]
    st, _, g = c.api("messages/" + m["id"], format="raw", fields="id,labelIds,raw")
    assert st == 200 and g["labelIds"] == ["INBOX", "STARRED"] and g["raw"]

def test_labels_create_list_and_modify(cl):
    c = scoped_client(cl, SCOPE_MODIFY)
    st, _, lab = post(c, "labels", {"name": "Projects/Lattice", "labelListVisibility": "labelShow",
                                    "messageListVisibility": "show"})
    assert st == 200
    assert lab == {"id": lab["id"], "name": "Projects/Lattice", "labelListVisibility": "labelShow",
                   "messageListVisibility": "show", "type": "user"}
    assert lab["id"].startswith("Label_")
    st, _, lab2 = post(c, "labels", {"name": "Receipts",
                                     "color": {"textColor": "#000000",
                                               "backgroundColor": "#ffffff"}})
    assert st == 200 and lab2["id"] != lab["id"] and lab2["type"] == "user"
    assert lab2["color"] == {"textColor": "#000000", "backgroundColor": "#ffffff"}
    st, _, b = post(c, "labels", {"name": "receipts"})
    assert st == 409
    google_error(b, 409, "duplicate")
    assert b["error"]["message"] == "Label name exists or conflicts"
    st, _, b = post(c, "labels", {"name": "INBOX"})
    assert st == 409
    st, _, b = post(c, "labels", {})
    assert st == 400
    st, _, b = post(c, "labels", {"name": "Y", "labelListVisibility": "sometimes"})
    assert st == 400
    st, _, ls = c.api("labels")
    by_id = {x["id"]: x for x in ls["labels"]}
    assert by_id["INBOX"] == {"id": "INBOX", "name": "INBOX", "type": "system"}
    assert by_id[lab["id"]] == lab
    assert by_id[lab2["id"]] == {"id": lab2["id"], "name": "Receipts", "type": "user"}
    st, _, g = c.api("labels/" + lab["id"])
    assert st == 200 and g["name"] == "Projects/Lattice" and g["messagesTotal"] == 0

    m = add_raw(cl, make_raw("m1"), labelIds=["INBOX", "UNREAD"])
    st, _, p0 = c.api("profile")
    # a "move": add the custom label, remove INBOX and UNREAD
    st, _, b = post(c, "messages/%s/modify" % m["id"],
                    {"addLabelIds": [lab["id"]], "removeLabelIds": ["INBOX", "UNREAD"]})
    assert st == 200
    assert b == {"id": m["id"], "threadId": m["threadId"], "labelIds": [lab["id"]]}
    recs, cur = history_since(c, p0["historyId"])
    assert len(recs) == 2 and cur == recs[1]["id"]
    assert recs[0]["labelsAdded"] == [{"message": {"id": m["id"], "threadId": m["threadId"],
                                                   "labelIds": ["INBOX", "UNREAD", lab["id"]]},
                                       "labelIds": [lab["id"]]}]
    assert recs[1]["labelsRemoved"] == [{"message": {"id": m["id"], "threadId": m["threadId"],
                                                     "labelIds": [lab["id"]]},
                                         "labelIds": ["INBOX", "UNREAD"]}]
    assert [r["id"] for r in history_since(c, p0["historyId"], historyTypes="labelRemoved")[0]] \
        == [recs[1]["id"]]
    assert len(history_since(c, p0["historyId"], labelId=lab["id"])[0]) == 2
    # messages.list labelIds honours custom labels; the message left the inbox
    st, _, r = c.api("messages", labelIds=lab["id"])
    assert [x["id"] for x in r["messages"]] == [m["id"]]
    st, _, r = c.api("messages", labelIds="INBOX")
    assert "messages" not in r
    st, _, g = c.api("labels/" + lab["id"])
    assert g["messagesTotal"] == 1
    # unknown labels, too many labels, unknown message, bad JSON: errors, no change
    st, _, b = post(c, "messages/%s/modify" % m["id"], {"addLabelIds": ["Label_999999"]})
    assert st == 400 and b["error"]["message"] == "Invalid label: Label_999999"
    google_error(b, 400, "invalidArgument")
    st, _, b = post(c, "messages/%s/modify" % m["id"],
                    {"addLabelIds": ["STARRED"] * 101})
    assert st == 400
    st, _, b = post(c, "messages/0000000000000001/modify", {"addLabelIds": ["STARRED"]})
    assert st == 404
    st, _, b = c.json("POST", "/gmail/v1/users/me/messages/%s/modify" % m["id"], b"{nope",
                      {"Content-Type": "application/json"})
    assert st == 400
    assert history_since(c, cur)[0] == []
    # a no-op modify answers the message and makes no record
    st, _, b = post(c, "messages/%s/modify" % m["id"], {"addLabelIds": [lab["id"]]})
    assert st == 200 and b["labelIds"] == [lab["id"]]
    assert history_since(c, cur)[0] == []


def test_batch_modify(cl):
    c = scoped_client(cl, SCOPE_MODIFY)
    ms = [add_raw(cl, make_raw("bm%d" % i), labelIds=["INBOX", "UNREAD"]) for i in range(3)]
    st, _, p0 = c.api("profile")
    cl.ctl("POST", "/counters/reset")
    st, _, data = c.request("POST", "/gmail/v1/users/me/messages/batchModify",
                            json.dumps({"ids": [m["id"] for m in ms] + ["0000000000000001"],
                                        "addLabelIds": ["STARRED"],
                                        "removeLabelIds": ["UNREAD"]}).encode(),
                            {"Content-Type": "application/json"})
    assert st == 204 and data == b""
    st, cnt = cl.ctl("GET", "/counters")
    assert cnt["units_by_user"][USER] == 50
    recs, _ = history_since(c, p0["historyId"])
    assert [list(r)[2] for r in recs] == ["labelsAdded", "labelsRemoved"] * 3
    assert [r["messages"][0]["id"] for r in recs] == [ms[0]["id"]] * 2 + [ms[1]["id"]] * 2 + \
        [ms[2]["id"]] * 2
    for m in ms:
        st, _, g = c.api("messages/" + m["id"], format="minimal")
        assert g["labelIds"] == ["INBOX", "STARRED"]
    st, _, b = post(c, "messages/batchModify", {"ids": ["1"] * 1001, "addLabelIds": ["STARRED"]})
    assert st == 400
    st, _, b = post(c, "messages/batchModify", {"ids": [ms[0]["id"]], "addLabelIds": ["nope"]})
    assert st == 400 and b["error"]["message"] == "Invalid label: nope"


def test_modify_in_a_batch_request(cl):
    c = scoped_client(cl, SCOPE_MODIFY)
    m = add_raw(cl, make_raw("bb1"))
    calls = ["POST /gmail/v1/users/me/messages/%s/modify\r\nContent-Type: application/json"
             "\r\n\r\n{\"addLabelIds\": [\"STARRED\"]}" % m["id"],
             "POST /gmail/v1/users/me/messages/%s/trash" % m["id"],
             "GET /gmail/v1/users/me/messages/%s?format=minimal" % m["id"]]
    st, h, data = c.request("POST", "/batch/gmail/v1", batch_body(calls),
                            {"Content-Type": "multipart/mixed; boundary=batch_foobarbaz"})
    assert st == 200
    parts = parse_batch(h, data)
    assert [p[1] for p in parts] == [200, 200, 200]
    assert parts[0][2]["labelIds"] == ["INBOX", "UNREAD", "STARRED"]
    assert parts[2][2]["labelIds"] == ["INBOX", "UNREAD", "STARRED", "TRASH"]


def test_control_user_changes_trash_labels_delete(cl):
    """What the user does in the Gmail UI, through the control API: each change advances
    the mailbox historyId and makes the record the API then lists."""
    m = add_raw(cl, make_raw("u1"), labelIds=["INBOX"])
    st, s0 = cl.ctl("GET", "/users/" + USER)
    h0 = s0["historyId"]
    st, lab = cl.ctl("POST", "/users/%s/labels" % USER, {"name": "Travel"})
    assert st == 200 and lab["id"].startswith("Label_") and lab["type"] == "user"
    st, b = cl.ctl("POST", "/users/%s/labels" % USER, {"name": "travel"})
    assert st == 409
    st, ls = cl.ctl("GET", "/users/%s/labels" % USER)
    assert lab in ls["labels"]
    st, b = cl.ctl("POST", "/users/%s/messages/%s/labels" % (USER, m["id"]),
                   {"add": [lab["id"]], "remove": ["INBOX"]})
    assert st == 200 and b["labelIds"] == [lab["id"]]
    st, b = cl.ctl("POST", "/users/%s/messages/%s/trash" % (USER, m["id"]))
    assert st == 200 and b["labelIds"] == [lab["id"], "TRASH"]
    h_trash = b["historyId"]
    st, b = cl.ctl("POST", "/users/%s/messages/%s/untrash" % (USER, m["id"]))
    assert st == 200 and b["labelIds"] == [lab["id"]] and int(b["historyId"]) > int(h_trash)
    st, b = cl.ctl("DELETE", "/users/%s/messages/%s" % (USER, m["id"]))
    assert st == 200
    st, b = cl.ctl("POST", "/users/%s/messages/%s/trash" % (USER, m["id"]))
    assert st == 404
    recs, cur = history_since(cl, h0)
    kinds = [[k for k in r if k not in ("id", "messages")][0] for r in recs]
    assert kinds == ["labelsAdded", "labelsRemoved", "labelsAdded", "labelsRemoved",
                     "messagesDeleted"]
    assert recs[2]["labelsAdded"][0]["labelIds"] == ["TRASH"]
    st, s1 = cl.ctl("GET", "/users/" + USER)
    assert s1["historyId"] == cur == recs[-1]["id"] and int(cur) > int(h0)
    st, _, ls = cl.api("labels")
    assert {"id": lab["id"], "name": "Travel", "type": "user"} in ls["labels"]


# ---------------------------------------------------------------------------
# control API, keep-alive, gzip, scale
# ---------------------------------------------------------------------------

def test_control_errors(cl):
    st, b = cl.ctl("GET", "/users/nobody@example.com")
    assert st == 404
    st, b = cl.ctl("POST", "/config", {"no_such_key": 1})
    assert st == 400
    st, b = cl.ctl("GET", "/nothing")
    assert st == 404
    st, b = cl.ctl("DELETE", "/users/%s/messages/ffff" % USER)
    assert st == 404


def test_keepalive_and_gzip(cl):
    cl.ctl("POST", "/users/%s/messages/generate" % USER, {"count": 300})
    c = cl.conn()
    for _ in range(5):
        st, h, data = cl.request("GET", "/gmail/v1/users/me/messages?maxResults=300",
                                 headers={"Accept-Encoding": "gzip"}, conn=c)
        assert st == 200 and h.get("content-encoding") == "gzip"
    import gzip
    assert len(json.loads(gzip.decompress(data))["messages"]) == 300
    c.close()


def test_delete_user_and_tokens(cl):
    st, b = cl.ctl("DELETE", "/users/" + USER)
    assert st == 200
    assert cl.refresh()[0] == 400
    assert cl.api("profile")[0] == 401


def test_scale_20k_messages(cl):
    t0 = time.monotonic()
    st, g = cl.ctl("POST", "/users/%s/messages/generate" % USER,
                   {"count": 20000, "size": 3000, "return_ids": False})
    gen_s = time.monotonic() - t0
    assert st == 200 and g["count"] == 20000 and "ids" not in g
    assert gen_s < 120, gen_s  # a hang guard (speed: bench.py)
    t0 = time.monotonic()
    n, tok = 0, None
    while True:
        params = {"maxResults": 500, "prettyPrint": "false"}
        if tok:
            params["pageToken"] = tok
        st, _, b = cl.api("messages", **params)
        n += len(b["messages"])
        tok = b.get("nextPageToken")
        if not tok:
            break
    assert n == 20000
    assert time.monotonic() - t0 < 120  # a hang guard (speed: bench.py)
    st, _, r = cl.api("messages/" + g["last_id"], format="raw")
    assert st == 200 and abs(len(b64d(r["raw"])) - 3000) < 100


def test_sigterm_clean_exit_is_checked_by_fixture(server):
    # the session fixture asserts exit code 0 and removal of the ready file
    assert server["proc"].poll() is None


def test_cli_flags_and_seed_file(tmp_path):
    """A second emulator, plain HTTP, configured from the command line and a seed file."""
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"users": [{"email": "seed@example.com", "refresh_token": "rt-s",
                                           "client_id": "c", "client_secret": "s",
                                           "generate": {"count": 7}}]}))
    state = tmp_path / "state"
    proc = subprocess.Popen([os.path.join(HERE, "run"), "--port", "0", "--no-tls",
                             "--state-dir", str(state), "--seed-file", str(seed),
                             "--latency-ms", "12", "--quota-units-per-s", "100",
                             "--quota-mode", "403", "--concurrency-limit", "3",
                             "--history-retention", "42", "--history-retention-s", "600",
                             "--access-token-ttl-s", "77", "--no-retry-after"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ready = state / "gmail-emulator.ready"
        deadline = time.time() + 20
        while not ready.exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        port = int(ready.read_text().strip().rsplit(":", 1)[1])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/_emulator/config")
        cfg = json.loads(c.getresponse().read())
        assert (cfg["latency_ms"], cfg["quota_units_per_s"], cfg["quota_mode"],
                cfg["concurrency_limit"], cfg["history_retention_records"],
                cfg["history_retention_s"], cfg["access_token_ttl_s"], cfg["retry_after"]) == \
            (12, 100, "403", 3, 42, 600, 77, False)
        c.request("GET", "/_emulator/users/seed@example.com")
        u = json.loads(c.getresponse().read())
        assert u["messagesTotal"] == 7
        c.close()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0
    assert "listening on http://127.0.0.1:%d" % port in out and "stopped" in out
    assert "rt-s" not in out  # no secrets in the log


# ---------------------------------------------------------------------------
# push notifications: users.watch / users.stop, Pub/Sub push delivery
# ---------------------------------------------------------------------------

import http.server  # noqa: E402
import queue  # noqa: E402
import threading  # noqa: E402

TOPIC = "projects/lattice-test/topics/gmail-%d" % os.getpid()
SA = "gmail-push@lattice-test.iam.gserviceaccount.com"


class PushSink:
    """A push endpoint: records every POST (path, headers, body), answers `status`."""

    def __init__(self):
        self.got = queue.Queue()
        self.status = 204
        sink = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                sink.got.put((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/gmail/push" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def next(self):
        return self.got.get(timeout=30)  # a hang guard only

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture(scope="session")
def push_key():
    d = tempfile.mkdtemp(prefix="gmail-emu-push-")
    key = os.path.join(d, "push-key.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", key], check=True, capture_output=True)
    yield key
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sink():
    s = PushSink()
    yield s
    s.close()


def subscribe(cl, sink, key, name="push", oidc=True, query=""):
    spec = {"name": "projects/lattice-test/subscriptions/%s-%d" % (name, os.getpid()),
            "topic": TOPIC, "push_endpoint": sink.url + query, "key_file": key}
    if oidc:
        spec["oidc_token"] = {"service_account_email": SA, "audience": "lattice-watcher"}
    st, res = cl.ctl("POST", "/pubsub/subscriptions", spec)
    assert st == 200, res
    return res


def watch(cl, body):
    return cl.json("POST", "/gmail/v1/users/me/watch", json.dumps(body).encode(),
                   {"Content-Type": "application/json"})


def jwt_verify(cl, token):
    """Check an RS256 JWT against the emulator's JWKS; return its claims."""
    head, claims, sig = token.split(".")
    h = json.loads(b64d(head))
    st, _, jwks = cl.json("GET", "/oauth2/v3/certs", auth=False)
    assert st == 200
    k = [k for k in jwks["keys"] if k["kid"] == h["kid"]][0]
    n = int.from_bytes(b64d(k["n"]), "big")
    e = int.from_bytes(b64d(k["e"]), "big")
    em = pow(int.from_bytes(b64d(sig), "big"), e, n).to_bytes((n.bit_length() + 7) // 8, "big")
    digest = gmail_emulator._SHA256_DIGEST_INFO + \
        gmail_emulator.hashlib.sha256((head + "." + claims).encode()).digest()
    assert h["alg"] == "RS256" and em.endswith(b"\x00" + digest) and em.startswith(b"\x00\x01\xff")
    return json.loads(b64d(claims))


def test_watch_shape_and_errors(cl):
    t0 = int(time.time() * 1000)
    st, _, res = watch(cl, {"topicName": TOPIC, "labelIds": ["INBOX"],
                            "labelFilterBehavior": "include"})
    assert st == 200 and set(res) == {"historyId", "expiration"}
    _, _, prof = cl.api("profile")
    assert res["historyId"] == prof["historyId"]
    seven_days = 7 * 24 * 3600 * 1000
    assert t0 + seven_days <= int(res["expiration"]) <= int(time.time() * 1000) + seven_days
    st, _, b = watch(cl, {"labelIds": ["INBOX"]})
    google_error(b, 400, "invalidArgument")
    st, _, b = watch(cl, {"topicName": "my-topic"})
    google_error(b, 400, "invalidArgument")
    st, _, b = watch(cl, {"topicName": TOPIC, "labelFilterBehavior": "sideways"})
    assert st == 400
    _, w = cl.ctl("GET", "/pubsub/watches")
    assert w["watches"][USER]["topicName"] == TOPIC
    st, _, body = cl.request("POST", "/gmail/v1/users/me/stop")
    assert st == 204 and body == b""
    assert USER not in cl.ctl("GET", "/pubsub/watches")[1]["watches"]
    _, c = cl.ctl("GET", "/counters")
    assert c["by_method"]["gmail.users.watch"] == 4 and c["by_method"]["gmail.users.stop"] == 1
    assert c["units_by_user"][USER] >= 100 + 50


def test_push_envelope_and_oidc_token(cl, sink, push_key):
    sub = subscribe(cl, sink, push_key)
    st, _, _ = watch(cl, {"topicName": TOPIC})
    assert st == 200
    res = add_raw(cl, make_raw("pushed"), labelIds=["INBOX"])
    path, h, body = sink.next()
    assert path == "/gmail/push" and h["content-type"] == "application/json"
    env = json.loads(body)
    assert env["subscription"] == sub["name"]
    m = env["message"]
    data = json.loads(base64.b64decode(m["data"]))
    assert data == {"emailAddress": USER, "historyId": int(res["historyId"])}
    assert m["messageId"] and m["publishTime"].endswith("Z")
    assert h["authorization"].startswith("Bearer ")
    claims = jwt_verify(cl, h["authorization"][7:])
    assert claims["iss"] == "https://accounts.google.com" and claims["aud"] == "lattice-watcher"
    assert claims["email"] == SA and claims["email_verified"] is True
    assert claims["iat"] <= time.time() + 5 < claims["exp"]


def test_push_label_filter_stop_and_shared_token(cl, sink, push_key):
    subscribe(cl, sink, push_key, oidc=False, query="?token=s3cret")
    assert watch(cl, {"topicName": TOPIC, "labelIds": ["INBOX"]})[0] == 200
    add_raw(cl, make_raw("not-inbox"), labelIds=["Label_9"])   # filtered out
    res = add_raw(cl, make_raw("inbox"), labelIds=["INBOX"])
    path, h, body = sink.next()
    assert path == "/gmail/push?token=s3cret" and "authorization" not in h
    hid = json.loads(base64.b64decode(json.loads(body)["message"]["data"]))["historyId"]
    assert hid == int(res["historyId"])     # the filtered change was never published
    # stopped: nothing is published until the next watch
    assert cl.request("POST", "/gmail/v1/users/me/stop")[0] == 204
    add_raw(cl, make_raw("while-stopped"), labelIds=["INBOX"])
    assert watch(cl, {"topicName": TOPIC, "labelIds": ["INBOX"]})[0] == 200
    res = add_raw(cl, make_raw("after"), labelIds=["INBOX"])
    _, _, body = sink.next()
    hid = json.loads(base64.b64decode(json.loads(body)["message"]["data"]))["historyId"]
    assert hid == int(res["historyId"])


def test_push_rejected_is_retried(cl, sink, push_key):
    sub = subscribe(cl, sink, push_key)
    sink.status = 401
    assert watch(cl, {"topicName": TOPIC})[0] == 200
    add_raw(cl, make_raw("rejected"), labelIds=["INBOX"])
    _, h1, b1 = sink.next()
    _, h2, b2 = sink.next()      # Pub/Sub redelivers an unacknowledged message
    assert json.loads(b1)["message"]["messageId"] == json.loads(b2)["message"]["messageId"]
    sink.status = 204
    _, dl = cl.ctl("GET", "/pubsub/deliveries?subscription=" + urllib.parse.quote(sub["name"]))
    assert [d["status"] for d in dl["deliveries"][:2]] == [401, 401]
    assert dl["deliveries"][1]["attempt"] == 2
