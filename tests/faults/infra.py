"""Private servers of the fault campaign (tests/faults/fault-campaign), each
behind a Toxiproxy proxy: a single-node KRaft Kafka that advertises its
proxy's port (so every client byte goes through the proxy), a PostgreSQL
cluster, a MinIO server (with a 503 SlowDown switch in front) and a Gmail API
emulator; the stack's Dovecot is reached through a proxy too. The campaign
may stop any of them: the shared stack is never touched. Standard library
only. Not part of the product."""
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_until(what, pred, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    raise RuntimeError("%s: not ready within %.0f s" % (what, timeout))


def stack_var(name):
    for line in open(os.path.join(ROOT, "deploy", "local", "stack")):
        if line.startswith(name + "="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError("%s not found in deploy/local/stack" % name)


def cache_dir():
    return os.environ.get("LATTICE_CACHE_DIR") or os.path.join(ROOT, ".cache")


# --- Toxiproxy ---------------------------------------------------------------

class Toxiproxy:
    """toxiproxy-server (bench/lib/latency-proxy installs it) and its HTTP API."""

    def __init__(self, work):
        binary = os.path.join(cache_dir(), "bin", "toxiproxy-server")
        if not os.access(binary, os.X_OK):
            subprocess.run([os.path.join(ROOT, "bench", "lib", "latency-proxy"), "install"],
                           check=True)
        self.port = free_port()
        self.log = open(os.path.join(work, "toxiproxy.log"), "wb")
        self.proc = subprocess.Popen([binary, "-host", "127.0.0.1", "-port", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until("toxiproxy", lambda: self.api("GET", "/version") is not None, 30)
        self.ports = {}

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw

    def proxy(self, name, upstream, listen_port=None):
        port = listen_port or free_port()
        self.api("POST", "/proxies", {"name": name, "listen": "127.0.0.1:%d" % port,
                                      "upstream": upstream, "enabled": True})
        self.ports[name] = port
        return port

    def toxic(self, proxy, name, kind, stream, **attrs):
        self.api("POST", "/proxies/%s/toxics" % proxy,
                 {"name": name, "type": kind, "stream": stream, "toxicity": 1.0,
                  "attributes": attrs})

    def untoxic(self, proxy, name):
        try:
            self.api("DELETE", "/proxies/%s/toxics/%s" % (proxy, name))
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise

    def enable(self, proxy, on):
        self.api("POST", "/proxies/%s" % proxy, {"enabled": bool(on)})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# --- a 503 SlowDown switch in front of MinIO ----------------------------------

SLOWDOWN = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")
SLOWDOWN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                 b"<Message>Please reduce your request rate.</Message></Error>")


class SlowDownSwitch:
    """A TCP forwarder (threads) to an S3 server. arm(): the open connections
    are closed and every new one gets one 503 SlowDown answer to its first
    request, then is closed (S3's answer to a request rate it sheds);
    disarm(): plain forwarding again."""

    def __init__(self, upstream_port):
        self.up = upstream_port
        self.armed = False
        self.lock = threading.Lock()
        self.conns = set()
        self.answered = 0
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        if self.armed:
            try:
                c.settimeout(10)
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    d = c.recv(65536)
                    if not d:
                        break
                    head += d
                if head:
                    c.sendall(SLOWDOWN % (len(SLOWDOWN_BODY), SLOWDOWN_BODY))
                    with self.lock:
                        self.answered += 1
            except OSError:
                pass
            finally:
                c.close()
            return
        try:
            u = socket.create_connection(("127.0.0.1", self.up), timeout=10)
            u.settimeout(None)
        except OSError:
            c.close()
            return
        with self.lock:
            self.conns.add((c, u))

        def pump(a, b):
            try:
                while True:
                    d = a.recv(262144)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(u, c), daemon=True)
        t.start()
        pump(c, u)
        t.join()
        with self.lock:
            self.conns.discard((c, u))
        c.close()
        u.close()

    def arm(self, on):
        self.armed = on
        if on:
            with self.lock:
                conns = list(self.conns)
            for c, u in conns:
                for s in (c, u):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


# --- Kafka ---------------------------------------------------------------------

class Kafka:
    """One KRaft broker. INTERNAL (the broker itself, the campaign's checks)
    advertises its own port; EXTERNAL advertises the proxy's port, so the
    workers, which bootstrap through the proxy, stay behind it."""

    def __init__(self, work, proxy_port):
        self.dir = os.path.join(work, "kafka")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.libs = os.path.join(cache_dir(), "kafka-%s" % stack_var("KAFKA_VERSION"), "libs")
        if not os.path.isdir(self.libs):
            raise RuntimeError("no Kafka jars in %s: deploy/local/stack up installs them" % self.libs)
        self.port, self.ext, self.cport = free_port(), free_port(), free_port()
        self.proxy_port = proxy_port
        self.props = os.path.join(self.dir, "server.properties")
        with open(self.props, "w") as f:
            f.write("""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{c}
listeners=INTERNAL://127.0.0.1:{i},EXTERNAL://127.0.0.1:{e},CONTROLLER://127.0.0.1:{c}
advertised.listeners=INTERNAL://127.0.0.1:{i},EXTERNAL://127.0.0.1:{p}
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={d}/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
""".format(c=self.cport, i=self.port, e=self.ext, p=proxy_port, d=self.dir))
        with open(os.path.join(self.dir, "log4j.properties"), "w") as f:
            f.write("log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
                    "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
                    "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n")
        uuid = self.tool(["kafka.tools.StorageTool", "random-uuid"]).strip().splitlines()[-1]
        self.tool(["kafka.tools.StorageTool", "format", "-t", uuid, "-c", self.props])
        self.proc = None
        self.log = open(os.path.join(work, "kafka.log"), "ab")
        self.start()

    def tool(self, args):
        r = subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                            "-Dlog4j.configuration=file:%s/log4j.properties" % self.dir,
                            "-cp", self.libs + "/*"] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
        if r.returncode != 0:
            raise RuntimeError("kafka %s: %s" % (args[0], r.stderr.decode()[-1500:]))
        return r.stdout.decode()

    def up(self):
        r = subprocess.run(["kcat", "-L", "-b", "127.0.0.1:%d" % self.port, "-m", "3"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        return b"broker 1 at" in r.stdout

    def start(self):
        self.proc = subprocess.Popen(
            ["java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
             "-Dlog4j.configuration=file:%s/log4j.properties" % self.dir,
             "-Dkafka.logs.dir=%s" % self.dir, "-cp", self.libs + "/*", "kafka.Kafka", self.props],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until("private Kafka", lambda: self.proc.poll() is None and self.up(), 180, 0.5)

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def term(self):
        self.proc.terminate()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def topic(self, name, partitions, config=None):
        self.tool(["org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
                   "127.0.0.1:%d" % self.port, "--create", "--topic", name, "--partitions",
                   str(partitions), "--replication-factor", "1"] +
                  (["--config", config] if config else []))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill9()


# --- PostgreSQL ------------------------------------------------------------------

class Postgres:
    """initdb into the work directory (as the postgres user when root), its own
    port, role and database lattice, the repository's migrations."""

    def __init__(self, work, build):
        bins = sorted((d for d in os.listdir("/usr/lib/postgresql")), key=lambda v: int(v))
        self.bin = "/usr/lib/postgresql/%s/bin" % bins[-1]
        self.root = os.getuid() == 0
        self.dir = os.path.join(work, "pg")
        os.chmod(work, 0o711)
        os.makedirs(self.dir, exist_ok=True)
        self.password = secrets.token_hex(16)
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write(self.password + "\n")
        if self.root:
            subprocess.run(["chown", "-R", "postgres", self.dir], check=True)
        self.as_pg([self.bin + "/initdb", "-D", self.dir + "/data", "-U", "postgres",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile=" + pw])
        os.unlink(pw)
        self.port = free_port()
        self.start()
        self.dsn_admin = "host=127.0.0.1 port=%d dbname=postgres user=postgres" % self.port
        self.sql("CREATE ROLE lattice LOGIN PASSWORD '%s'" % self.password, db="postgres")
        self.sql("CREATE DATABASE lattice OWNER lattice", db="postgres")
        env = dict(os.environ, LATTICE_PG_DSN=self.dsn("lattice", self.port),
                   LATTICE_PG_PASSWORD=self.password)
        r = subprocess.run([os.path.join(build, "tools", "lattice-migrate"), "--dir",
                            os.path.join(ROOT, "migrations")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("lattice-migrate: %s" % r.stdout.decode()[-2000:])

    def dsn(self, user, port, db="lattice"):
        return "host=127.0.0.1 port=%d dbname=%s user=%s" % (port, db, user)

    def as_pg(self, args, check=True):
        if self.root:
            args = ["runuser", "-u", "postgres", "--"] + args
        r = subprocess.run(args, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
        if check and r.returncode != 0:
            raise RuntimeError("%s: %s" % (os.path.basename(args[-1] if not self.root else args[4]),
                                           r.stdout.decode()[-1500:]))
        return r

    def start(self):
        self.as_pg([self.bin + "/pg_ctl", "-D", self.dir + "/data", "-l", self.dir + "/pg.log",
                    "-w", "-t", "120", "-o", "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c max_connections=200" % (self.port, self.dir), "start"])

    def stop_immediate(self):
        self.as_pg([self.bin + "/pg_ctl", "-D", self.dir + "/data", "-m", "immediate", "-w",
                    "-t", "60", "stop"], check=False)

    def sql(self, sql, db="lattice", timeout=60):
        e = dict(os.environ, PGPASSWORD=self.password)
        r = subprocess.run(["psql", self.dsn("postgres", self.port, db), "-X", "-A", "-t", "-q",
                            "-v", "ON_ERROR_STOP=1", "-F", "\t", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr.decode(errors="replace"))
        return r.stdout.decode()

    def stop(self):
        if os.path.isdir(self.dir + "/data"):
            self.stop_immediate()


# --- MinIO -------------------------------------------------------------------------

class Minio:
    """The stack's MinIO binary with its own data directory, port and keys."""

    def __init__(self, work, bucket, region):
        self.bin = os.path.join(cache_dir(), "bin", "minio")
        if not os.access(self.bin, os.X_OK):
            raise RuntimeError("no MinIO in %s: deploy/local/stack up installs it" % self.bin)
        self.dir = os.path.join(work, "minio")
        os.makedirs(self.dir, exist_ok=True)
        self.port, self.console = free_port(), free_port()
        self.key, self.secret = "fc" + secrets.token_hex(8), secrets.token_hex(20)
        self.bucket, self.region = bucket, region
        self.log = open(os.path.join(work, "minio.log"), "ab")
        self.proc = None
        self.start()
        r = self.curl("PUT", "/" + bucket)
        if r not in ("200",):
            raise RuntimeError("creating bucket %s: HTTP %s" % (bucket, r))

    def curl(self, method, path):
        r = subprocess.run(["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-w",
                            "%{http_code}", "-X", method, "--aws-sigv4",
                            "aws:amz:%s:s3" % self.region, "--user",
                            "%s:%s" % (self.key, self.secret), "-H",
                            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                            "http://127.0.0.1:%d%s" % (self.port, path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        return r.stdout.decode().strip()

    def start(self):
        env = dict(os.environ, MINIO_ROOT_USER=self.key, MINIO_ROOT_PASSWORD=self.secret,
                   MINIO_UPDATE="off", MINIO_BROWSER="off", MINIO_REGION=self.region)
        self.proc = subprocess.Popen([self.bin, "server", "--quiet", "--address",
                                      "127.0.0.1:%d" % self.port, "--console-address",
                                      "127.0.0.1:%d" % self.console, self.dir],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def ready():
            urllib.request.urlopen("http://127.0.0.1:%d/minio/health/ready" % self.port,
                                   timeout=2).read()
            return self.proc.poll() is None
        wait_until("private MinIO", ready, 120)

    def term(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.term()


# --- the Gmail API emulator -------------------------------------------------------

class Emulator:
    """tests/gmail-emulator with the stack's certificate and a latency per request."""

    def __init__(self, work, latency_ms):
        stack = os.environ.get("LATTICE_STACK_DIR") or os.path.join(ROOT, ".stack")
        cert = os.path.join(stack, "gmail", "server.pem")
        if not os.path.exists(cert):
            raise RuntimeError("no emulator certificate %s (deploy/local/stack up issues it)" % cert)
        self.dir = os.path.join(work, "emulator")
        self.log = open(os.path.join(work, "emulator.log"), "wb")
        self.proc = subprocess.Popen([os.path.join(ROOT, "tests", "gmail-emulator", "run"),
                                      "--port", "0", "--cert", cert, "--key",
                                      os.path.join(stack, "gmail", "server.key"), "--state-dir",
                                      self.dir, "--latency-ms", str(latency_ms)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        ready = os.path.join(self.dir, "gmail-emulator.ready")
        wait_until("Gmail emulator", lambda: os.path.getsize(ready) > 0, 60, 0.05)
        self.url = open(ready).read().strip()
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def ctl(self, method, path, body=None):
        import ssl
        ctx = ssl.create_default_context(cafile=os.environ["LATTICE_CA_FILE"])
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/_emulator" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=120) as r:
            return json.loads(r.read() or b"{}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
