"""Shared helpers of the crash and rebalance tests (standard library only):
Postgres through psql, S3 listing through curl --aws-sigv4, committed Kafka
records through kcat (read_committed) and a small Avro decoder for
mail.raw.v1 events in Confluent wire format. Not part of the product."""
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def env(name):
    v = os.environ.get(name)
    if not v:
        sys.exit("%s is not set: eval \"$(deploy/local/stack env)\" first" % name)
    return v


def run(args, input=None, check=True, timeout=120):
    r = subprocess.run(args, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (args[0], r.returncode,
                                                   r.stderr.decode(errors="replace")[-2000:]))
    return r.stdout


def psql(sql):
    e = dict(os.environ, PGPASSWORD=env("LATTICE_PG_PASSWORD"))
    r = subprocess.run(["psql", env("LATTICE_PG_DSN"), "-X", "-A", "-t", "-q", "-v",
                        "ON_ERROR_STOP=1", "-F", "\t", "-c", sql],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("psql: %s" % r.stderr.decode(errors="replace"))
    return r.stdout.decode()


def q(s):
    return "'" + s.replace("'", "''") + "'"


class Psql:
    """One long-lived psql session for fast polling (a fresh psql costs ~20 ms)."""

    def __init__(self):
        e = dict(os.environ, PGPASSWORD=env("LATTICE_PG_PASSWORD"))
        self.p = subprocess.Popen(["psql", env("LATTICE_PG_DSN"), "-X", "-A", "-t", "-q"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, env=e, text=True, bufsize=1)

    def query(self, sql):
        self.p.stdin.write(sql.rstrip(";") + ";\n\\echo __end__\n")
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if not line or line.strip() == "__end__":
                return "".join(out)
            out.append(line)

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(10)
        except Exception:  # noqa: BLE001
            self.p.kill()


# --- object keys (lib/storage/lt_objkey.c) ---------------------------------

def secret_env(tenant, name):
    """The variable an account of tenant may name for its secret name:
    LTS_<tenant, letters and digits kept, other bytes _XX>__<name>
    (lib/common/lt_secret.h)."""
    return "LTS_" + "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else "_%02X" % b
                            for b in tenant.encode()) + "__" + name


def key_component(raw):
    out = []
    b = raw.encode()
    for i, c in enumerate(b):
        ch = chr(c)
        if (ch.isascii() and (ch.isalnum() or ch in "_.-")) and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.append("%%%02X" % c)
    s = "".join(out)
    if len(s) > 150:
        raise ValueError("component too long for this check: %s" % raw)
    return s


def message_key(tenant, account, pmid):
    return "tenant/%s/account/%s/provider/imap/message/%s/message.eml" % (
        key_component(tenant), key_component(account), key_component(pmid))


# --- S3 listing --------------------------------------------------------------

def s3_list(prefix):
    keys = set()
    token = None
    endpoint = env("LATTICE_S3_ENDPOINT")
    bucket = env("LATTICE_S3_BUCKET")
    region = os.environ.get("LATTICE_S3_REGION", "us-east-1")
    enc = lambda s: urllib.parse.quote(s, safe="-_.~")
    while True:
        # SigV4 signs the canonical query: parameters sorted, values encoded.
        params = []
        if token:
            params.append("continuation-token=" + enc(token))
        params += ["list-type=2", "max-keys=1000", "prefix=" + enc(prefix)]
        url = "%s/%s?%s" % (endpoint, bucket, "&".join(params))
        body = run(["curl", "-sS", "--fail", "--aws-sigv4", "aws:amz:%s:s3" % region,
                    "--user", "%s:%s" % (env("LATTICE_S3_ACCESS_KEY_ID"),
                                         env("LATTICE_S3_SECRET_ACCESS_KEY")),
                    "-H", "x-amz-content-sha256: "
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", url]).decode()
        for k in re.findall(r"<Key>([^<]*)</Key>", body):
            keys.add(k.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
                     .replace("&quot;", '"').replace("&apos;", "'"))
        m = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
        if "<IsTruncated>true</IsTruncated>" in body and m:
            token = m.group(1).replace("&amp;", "&")
        else:
            return keys


# --- Avro (Confluent wire format) -------------------------------------------

class Avro:
    """A small generic Avro binary decoder (enough for mail.raw.v1)."""

    def __init__(self, schema):
        self.names = {}
        self.schema = schema

    def long(self, b, i):
        shift = n = 0
        while True:
            c = b[i]
            i += 1
            n |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                break
        return (n >> 1) ^ -(n & 1), i

    def dec(self, s, b, i, ns=""):
        if isinstance(s, list):
            k, i = self.long(b, i)
            return self.dec(s[k], b, i, ns)
        if isinstance(s, str):
            if s in self.names:
                return self.dec(self.names[s], b, i, ns)
            if ns and (ns + "." + s) in self.names:
                return self.dec(self.names[ns + "." + s], b, i, ns)
            s = {"type": s}
        t = s["type"]
        if isinstance(t, (list, dict)):
            return self.dec(t, b, i, ns)
        if t in ("record", "enum", "fixed"):
            ns2 = s.get("namespace", ns)
            name = s["name"]
            full = name if "." in name else (ns2 + "." + name if ns2 else name)
            self.names[full] = s
            self.names[name] = s
            ns = ns2
        if t == "null":
            return None, i
        if t == "boolean":
            return b[i] != 0, i + 1
        if t in ("int", "long"):
            return self.long(b, i)
        if t == "float":
            return struct.unpack("<f", b[i:i + 4])[0], i + 4
        if t == "double":
            return struct.unpack("<d", b[i:i + 8])[0], i + 8
        if t in ("bytes", "string"):
            n, i = self.long(b, i)
            v = b[i:i + n]
            return (v.decode() if t == "string" else v), i + n
        if t == "fixed":
            return b[i:i + s["size"]], i + s["size"]
        if t == "enum":
            k, i = self.long(b, i)
            return s["symbols"][k], i
        if t == "record":
            o = {}
            for f in s["fields"]:
                o[f["name"]], i = self.dec(f["type"], b, i, ns)
            return o, i
        if t in ("array", "map"):
            out = [] if t == "array" else {}
            while True:
                n, i = self.long(b, i)
                if n == 0:
                    return out, i
                if n < 0:
                    n = -n
                    _, i = self.long(b, i)
                for _ in range(n):
                    if t == "array":
                        v, i = self.dec(s["items"], b, i, ns)
                        out.append(v)
                    else:
                        kk, i = self.dec("string", b, i, ns)
                        out[kk], i = self.dec(s["values"], b, i, ns)
        raise ValueError("avro type %r not supported" % (t,))


_schemas = {}


def decode_event(value):
    if len(value) < 5 or value[0] != 0:
        raise ValueError("not Confluent wire format")
    sid = struct.unpack(">I", value[1:5])[0]
    if sid not in _schemas:
        url = "%s/schemas/ids/%d" % (env("LATTICE_SCHEMA_REGISTRY_URL").rstrip("/"), sid)
        with urllib.request.urlopen(url, timeout=30) as r:
            _schemas[sid] = Avro(json.loads(json.loads(r.read())["schema"]))
    a = _schemas[sid]
    v, _ = a.dec(a.schema, value, 5)
    return v


def read_topic(broker, topic):
    """Every committed record of topic: (partition, offset, key, value, headers)."""
    raw = run(["kcat", "-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q",
               "-X", "isolation.level=read_committed",
               "-f", "@@ %p %o %K %S\n%k%s\n%h\n"], timeout=300)
    out = []
    i = 0
    while i < len(raw):
        nl = raw.index(b"\n", i)
        head = raw[i:nl].decode().split()
        assert head[0] == "@@", head
        p, o, kl, vl = int(head[1]), int(head[2]), int(head[3]), int(head[4])
        i = nl + 1
        k = raw[i:i + max(kl, 0)]
        i += max(kl, 0)
        v = raw[i:i + max(vl, 0)]
        i += max(vl, 0)
        assert raw[i:i + 1] == b"\n"
        nl = raw.index(b"\n", i + 1)
        hdrs = {}
        for h in raw[i + 1:nl].decode(errors="replace").split(","):
            if "=" in h:
                hk, hv = h.split("=", 1)
                hdrs[hk] = hv
        i = nl + 1
        out.append((p, o, k.decode(errors="replace"), v, hdrs))
    return out


def verify_account(broker, raw_topic, tenant, account, folder, uidvalidity, n, records=None):
    """What a user relies on, for UIDs 1..n of one IMAP folder: the .eml object
    at its expected key, >= 1 committed event each (header id = body id),
    duplicates only with identical event ids and object keys, and every
    attachment an event names stored. Returns {"checks": [(what, ok, detail)],
    "events", "duplicates", "duplicate_messages", "objects"}."""
    checks = []
    recs = records if records is not None else read_topic(broker, raw_topic)
    by_pmid = {}
    att_keys = set()
    bad_hdr = []
    bucket_prefix = "s3://%s/" % env("LATTICE_S3_BUCKET")
    for p, o, k, v, h in recs:
        if k != account:
            continue
        ev = decode_event(v)
        if ev["tenant_id"] != tenant or ev["source"]["account_id"] != account:
            continue
        pmid = ev["payload"]["provider_message_id"]
        if h.get("lattice.event_id") != ev["event_id"]:
            bad_hdr.append(pmid)
        for att in ev["payload"].get("attachments_manifest") or []:
            u = att.get("object_uri") or ""
            if u.startswith(bucket_prefix):
                att_keys.add(u[len(bucket_prefix):])
        by_pmid.setdefault(pmid, []).append((ev["event_id"], ev["payload"]["raw_object_uri"]))
    expected = {}
    for uid in range(1, n + 1):
        pmid = "%s;UIDVALIDITY=%d;UID=%d" % (folder, uidvalidity, uid)
        expected[pmid] = message_key(tenant, account, pmid)
    missing_ev = [p for p in expected if p not in by_pmid]
    unexpected = [p for p in by_pmid if p not in expected]
    checks.append(("%s: lattice.event_id header = body event_id" % account, not bad_hdr,
                   str(bad_hdr[:3])))
    checks.append(("%s: every UID 1..%d has a committed event" % (account, n), not missing_ev,
                   "%d missing, e.g. %s" % (len(missing_ev), missing_ev[:3])))
    checks.append(("%s: no event for a UID outside 1..%d" % (account, n), not unexpected,
                   str(unexpected[:3])))
    dups = dup_msgs = 0
    mismatched, wrong_key = [], []
    for pmid, evs in by_pmid.items():
        if len({e[0] for e in evs}) > 1 or len({e[1] for e in evs}) > 1:
            mismatched.append(pmid)
        if pmid in expected and {e[1] for e in evs} != {bucket_prefix + expected[pmid]}:
            wrong_key.append(pmid)
        if len(evs) > 1:
            dups += len(evs) - 1
            dup_msgs += 1
    checks.append(("%s: duplicates carry identical event ids and object keys" % account,
                   not mismatched, str(mismatched[:3])))
    checks.append(("%s: every event points at the expected object key" % account,
                   not wrong_key, str(wrong_key[:3])))
    keys = s3_list("tenant/%s/account/%s/" % (key_component(tenant), key_component(account)))
    missing_obj = [p for p, k in expected.items() if k not in keys]
    checks.append(("%s: every UID has its .eml object" % account, not missing_obj,
                   "%d missing, e.g. %s" % (len(missing_obj), missing_obj[:3])))
    missing_att = sorted(att_keys - keys)
    checks.append(("%s: every attachment named by an event is stored" % account,
                   not missing_att, "%d missing, e.g. %s" % (len(missing_att), missing_att[:3])))
    return {"checks": checks, "events": sum(len(v) for v in by_pmid.values()),
            "duplicates": dups, "duplicate_messages": dup_msgs, "objects": len(keys)}


class WorkerProc:
    """One lattice-worker process at a time; each start() gets a new log file
    <work>/<name>-NN.log."""

    def __init__(self, binary, env, work, name):
        self.binary, self.env, self.work, self.name = binary, env, work, name
        self.proc = None
        self.n = 0
        self.logf = None
        self.log_path = None
        self.spawned = 0.0

    def start(self):
        self.n += 1
        self.log_path = os.path.join(self.work, "%s-%02d.log" % (self.name, self.n))
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary], env=self.env,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.spawned = time.monotonic()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log_text()):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait()
        self.logf.close()
        return rc

    def term(self, timeout=90):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            rc = "timeout"
        self.logf.close()
        return rc
