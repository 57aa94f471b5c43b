"""Shared code of the Lattice command DAGs (deploy/airflow/dags/lattice__*.py).

The DAGs do no mail work themselves: they write sync commands
(``lattice.mail.sync.cmd.v1``, docs/commands.md) to Kafka, keyed by
account_id, and the lattice-worker pool executes them. Everything the four
DAGs share lives here once: the account look-ups in Postgres, parameter
checks, command construction, validation against
schemas/sync-command.v1.schema.json plus the rules the C parser adds, the W3C
traceparent, the producing operator, and the two DAG factories
(incremental_dag, backfill_dag) the DAG files call.

Configuration (docs/airflow.md):
  connection ``lattice_kafka``     Kafka producer config in ``extra``
                                   (``AIRFLOW_CONN_LATTICE_KAFKA``)
  connection ``lattice_postgres``  the database holding ``mail_accounts``
                                   (``AIRFLOW_CONN_LATTICE_POSTGRES``)
  Variable ``lattice_topic_commands``  command topic, default
                                   lattice.mail.sync.cmd.v1
                                   (``AIRFLOW_VAR_LATTICE_TOPIC_COMMANDS``)
  env ``LATTICE_COMMAND_SCHEMA_FILE``  the JSON Schema, when the DAG folder is
                                   deployed without the repository around it
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.apache.kafka.operators.produce import ProduceToTopicOperator
from airflow.sdk import DAG, Param, Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

SCHEMA = "lattice.mail.sync.cmd.v1"
DEFAULT_TOPIC = "lattice.mail.sync.cmd.v1"
TOPIC_VARIABLE = "lattice_topic_commands"
KAFKA_CONN_ID = "lattice_kafka"
POSTGRES_CONN_ID = "lattice_postgres"
# Rendered when the produce task runs, so a changed Variable needs no re-parse.
TOPIC_TEMPLATE = "{{ var.value.get('%s', '%s') }}" % (TOPIC_VARIABLE, DEFAULT_TOPIC)
MAX_COMMAND_BYTES = 65536  # the worker's limit (lt_command_parse)
MAX_UID = 4294967295
PROVIDERS = ("gmail", "imap")

_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class CommandError(ValueError):
    """A parameter or command that can never be right as given (fails the task, no retry)."""


# --------------------------------------------------------------------------
# The contract: JSON Schema plus the rules the C parser adds.


def schema_file() -> Path:
    """The command JSON Schema: $LATTICE_COMMAND_SCHEMA_FILE, else the repository's."""
    env = os.environ.get("LATTICE_COMMAND_SCHEMA_FILE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "schemas" / "sync-command.v1.schema.json"


@functools.lru_cache(maxsize=None)
def _validator_for(path: str):
    import jsonschema

    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except OSError as e:
        raise CommandError(
            f"command schema not readable: {e} (set LATTICE_COMMAND_SCHEMA_FILE)"
        ) from e
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validator():
    return _validator_for(str(schema_file()))


def _path(err) -> str:
    p = ".".join(str(x) for x in err.absolute_path)
    return p or "command"


def validate_command(cmd: Any) -> None:
    """Raise CommandError unless the worker's parser would accept ``cmd`` (a dict).

    JSON Schema first (every error, named by field path), then what the
    schema cannot say (docs/commands.md): ranges in order, integers that are
    Python ints (not 7.0, not True).
    """
    errors = sorted(validator().iter_errors(cmd), key=lambda e: list(e.absolute_path))
    if errors:
        raise CommandError("; ".join(f"{_path(e)}: {e.message}" for e in errors))
    bf = cmd.get("backfill")
    if not isinstance(bf, dict):
        return
    for name in ("start_uid", "end_uid"):
        if name in bf and type(bf[name]) is not int:
            raise CommandError(f"backfill.{name}: must be an integer, not {type(bf[name]).__name__}")
    if "start_date" in bf and bf["start_date"] > bf["end_date"]:
        raise CommandError(
            f"backfill: start_date {bf['start_date']} is after end_date {bf['end_date']}"
        )
    if "start_uid" in bf and "end_uid" in bf and bf["start_uid"] > bf["end_uid"]:
        raise CommandError(f"backfill: start_uid {bf['start_uid']} is after end_uid {bf['end_uid']}")


def loads_strict(text: str | bytes) -> Any:
    """json.loads that rejects duplicate field names (as the C parser does)."""

    def pairs(items):
        seen = {}
        for k, v in items:
            if k in seen:
                raise CommandError(f"duplicate field {json.dumps(k)}")
            seen[k] = v
        return seen

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise CommandError(f"command: not valid JSON: {e}") from e


def encode_command(cmd: dict) -> bytes:
    """The message value: compact UTF-8 JSON, at most 64 KiB."""
    value = json.dumps(cmd, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(value) > MAX_COMMAND_BYTES:
        raise CommandError(f"command: {len(value)} bytes, the limit is {MAX_COMMAND_BYTES}")
    return value


# --------------------------------------------------------------------------
# Parameters of the DAGs.


def check_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise CommandError(
            f"{name}: {value!r} is not an id (1-128 characters of A-Z a-z 0-9 . _ : -)"
        )
    return value


def check_date(name: str, value: Any) -> str:
    """An ISO YYYY-MM-DD date that exists, 1970 or later."""
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            if dt.date.fromisoformat(value).year >= 1970:
                return value
        except ValueError:
            pass
    raise CommandError(
        f"{name}: {value!r} is not a valid date (expected YYYY-MM-DD, a real date, 1970 or later)"
    )


def check_uid(name: str, value: Any) -> int | None:
    """An optional IMAP UID: None, or an integer 1..4294967295 (a string of digits too)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_UID:
        raise CommandError(f"{name}: {value!r} is not a UID (an integer 1..{MAX_UID})")
    return value


def check_text(name: str, value: Any, required: bool) -> str | None:
    """A folder or scope: 1-1024 characters, no control characters."""
    if value is None or value == "":
        if required:
            raise CommandError(f"{name}: missing (required)")
        return None
    if (
        not isinstance(value, str)
        or len(value) > 1024
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        raise CommandError(f"{name}: {value!r} must be 1-1024 characters without control characters")
    return value


# --------------------------------------------------------------------------
# Building commands.


def new_traceparent() -> str:
    """A W3C traceparent for this task: Airflow's own span when OpenTelemetry
    tracing is on and a span is current, else a new random trace (sampled)."""
    try:
        from opentelemetry import trace

        sc = trace.get_current_span().get_span_context()
        if sc.is_valid:
            return f"00-{sc.trace_id:032x}-{secrets.token_hex(8)}-01"
    except Exception:  # tracing is optional: a new trace is always fine
        pass
    trace_id = secrets.token_hex(16)
    while trace_id == "0" * 32:  # pragma: no cover - 2^-128
        trace_id = secrets.token_hex(16)
    span_id = secrets.token_hex(8)
    while span_id == "0" * 16:  # pragma: no cover
        span_id = secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01"


def child_traceparent(parent: str) -> str:
    """Same trace, a new span id: one span per command."""
    return f"00-{parent[3:35]}-{secrets.token_hex(8)}-{parent[-2:]}"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_command_id(provider: str, kind: str) -> str:
    """Unique per command: the worker runs a command id once (idempotency key).

    Made once in the build task and kept in XCom, so a retried produce task
    sends the same ids again and the worker does not run them twice.
    """
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"af.{provider}.{kind}.{stamp}.{secrets.token_hex(8)}"


def build_command(
    *,
    tenant_id: str,
    account_id: str,
    provider: str,
    kind: str,
    requested_by: str,
    traceparent: str,
    scope: str | None = None,
    backfill: dict | None = None,
) -> dict:
    """A validated command dict (raises CommandError)."""
    cmd: dict[str, Any] = {
        "schema": SCHEMA,
        "command_id": new_command_id(provider, kind),
        "tenant_id": tenant_id,
        "account_id": account_id,
        "provider": provider,
        "kind": kind,
    }
    if scope is not None:
        cmd["scope"] = scope
    if backfill is not None:
        cmd["backfill"] = backfill
    cmd["requested_at"] = utc_now()
    cmd["requested_by"] = requested_by
    cmd["traceparent"] = traceparent
    validate_command(cmd)
    return cmd


def gmail_backfill(start_date: Any, end_date: Any) -> dict:
    start = check_date("start_date", start_date)
    end = check_date("end_date", end_date)
    if start > end:
        raise CommandError(f"start_date {start} is after end_date {end}")
    return {"start_date": start, "end_date": end}


def imap_backfill(folder: Any, start_uid: Any, end_uid: Any) -> dict:
    bf: dict[str, Any] = {"folder": check_text("folder", folder, required=True)}
    s = check_uid("start_uid", start_uid)
    e = check_uid("end_uid", end_uid)
    if s is not None and e is not None and s > e:
        raise CommandError(f"start_uid {s} is after end_uid {e}")
    if s is not None:
        bf["start_uid"] = s
    if e is not None:
        bf["end_uid"] = e
    return bf


# --------------------------------------------------------------------------
# Accounts (Postgres mail_accounts, through the lattice_postgres connection).


def _records(sql: str, parameters: Sequence[Any]) -> list[tuple]:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return list(PostgresHook(postgres_conn_id=POSTGRES_CONN_ID).get_records(sql, parameters=parameters))


def enabled_accounts(provider: str, tenant_id: str | None = None) -> list[dict]:
    """Enabled accounts of one provider (optionally one tenant), in a stable order."""
    if provider not in PROVIDERS:
        raise CommandError(f"provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    rows = _records(
        "SELECT tenant_id, account_id, status FROM mail_accounts"
        " WHERE enabled AND provider = %s AND (%s::text IS NULL OR tenant_id = %s)"
        " ORDER BY tenant_id, account_id",
        (provider, tenant_id, tenant_id),
    )
    return [{"tenant_id": t, "account_id": a, "status": s} for t, a, s in rows]


def stale_after_s() -> int:
    """The in-flight threshold, shared with lattice-scheduler (LATTICE_SCHEDULER_STALE_AFTER_S)."""
    raw = os.environ.get("LATTICE_SCHEDULER_STALE_AFTER_S", "900")
    if not raw.isdigit() or not 1 <= int(raw) <= 604800:
        raise CommandError(f"LATTICE_SCHEDULER_STALE_AFTER_S: {raw!r} is not 1..604800")
    return int(raw)


def in_flight_accounts(provider: str, tenant_id: str | None, stale_s: int) -> set[tuple[str, str]]:
    """(tenant, account) pairs with a command in flight, by lattice-scheduler's rule
    (lib/state/lt_issued.c): running with a heartbeat newer than the threshold,
    or issued within the threshold and not started yet."""
    rows = _records(
        "SELECT tenant_id, account_id FROM mail_sync_commands"
        " WHERE status = 'running' AND heartbeat_at > now() - make_interval(secs => %s)"
        " AND provider = %s AND (%s::text IS NULL OR tenant_id = %s)"
        " UNION"
        " SELECT i.tenant_id, i.account_id FROM mail_sync_issued i"
        " WHERE i.issued_at > now() - make_interval(secs => %s)"
        " AND i.provider = %s AND (%s::text IS NULL OR i.tenant_id = %s)"
        " AND NOT EXISTS (SELECT 1 FROM mail_sync_commands c WHERE c.command_id = i.command_id)",
        (stale_s, provider, tenant_id, tenant_id, stale_s, provider, tenant_id, tenant_id),
    )
    return {(t, a) for t, a in rows}


def record_issued(cmds: Sequence[dict]) -> None:
    """Record commands in mail_sync_issued (as lattice-scheduler does), so neither
    the scheduler nor the next DAG run piles another command on an account
    whose command is still queued."""
    if not cmds:
        return
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    rows = [
        {"c": c["command_id"], "t": c["tenant_id"], "a": c["account_id"], "p": c["provider"], "s": c.get("scope")}
        for c in cmds
    ]
    PostgresHook(postgres_conn_id=POSTGRES_CONN_ID).run(
        "INSERT INTO mail_sync_issued (command_id, tenant_id, account_id, provider, scope)"
        " SELECT c, t, a, p, s FROM jsonb_to_recordset(%s::jsonb)"
        " AS x(c text, t text, a text, p text, s text) ON CONFLICT (command_id) DO NOTHING",
        parameters=(json.dumps(rows),),
    )


def find_account(account_id: str, provider: str, tenant_id: str | None = None) -> dict:
    """The one account ``account_id`` (in ``tenant_id`` when given) of ``provider``,
    enabled and active; CommandError with the reason otherwise."""
    rows = _records(
        "SELECT tenant_id, account_id, provider, enabled, status, coalesce(status_reason, '')"
        " FROM mail_accounts WHERE account_id = %s AND (%s::text IS NULL OR tenant_id = %s)"
        " ORDER BY tenant_id",
        (account_id, tenant_id, tenant_id),
    )
    where = f"account_id {account_id!r}" + (f" in tenant {tenant_id!r}" if tenant_id else "")
    if not rows:
        raise CommandError(f"no account with {where} in mail_accounts")
    if len(rows) > 1:
        tenants = ", ".join(r[0] for r in rows)
        raise CommandError(f"{where} exists in several tenants ({tenants}): set tenant_id")
    t, a, p, enabled, status, reason = rows[0]
    if p != provider:
        raise CommandError(f"{where} is of provider {p}, not {provider}")
    if not enabled:
        raise CommandError(f"{where} is disabled (mail_accounts.enabled is false)")
    if status != "active":
        raise CommandError(f"{where} is {status}" + (f": {reason}" if reason else ""))
    return {"tenant_id": t, "account_id": a, "status": status}


# --------------------------------------------------------------------------
# Task bodies (wrapped with @task in the DAG files).


def _fail(e: object) -> AirflowFailException:
    return AirflowFailException(str(e))


def incremental_commands(provider: str, dag_id: str, tenant_id: str | None = None) -> list[dict]:
    """One incremental command (all configured scopes) per enabled, active account
    that has no command in flight; the commands are recorded as issued."""
    log = _log()
    try:
        tenant = check_id("tenant_id", tenant_id) if tenant_id else None
        accounts = enabled_accounts(provider, tenant)
        busy = in_flight_accounts(provider, tenant, stale_after_s())
        parent = new_traceparent()
        cmds, skipped = [], []
        for acc in accounts:
            key = (acc["tenant_id"], acc["account_id"])
            if acc["status"] != "active":
                skipped.append(f"{key[0]}/{key[1]} ({acc['status']})")
            elif key in busy:
                skipped.append(f"{key[0]}/{key[1]} (in flight)")
            else:
                cmds.append(
                    build_command(
                        tenant_id=acc["tenant_id"],
                        account_id=acc["account_id"],
                        provider=provider,
                        kind="incremental",
                        requested_by=f"airflow:{dag_id}",
                        traceparent=child_traceparent(parent),
                    )
                )
    except CommandError as e:
        raise _fail(e) from e
    record_issued(cmds)
    log.info(
        "%d enabled %s account(s)%s: %d command(s), %d skipped, trace %s",
        len(accounts),
        provider,
        f" in tenant {tenant}" if tenant else "",
        len(cmds),
        len(skipped),
        parent[3:35],
    )
    if skipped:
        log.info("skipped: %s", ", ".join(skipped[:50]) + (" ..." if len(skipped) > 50 else ""))
    return cmds


def backfill_command(provider: str, dag_id: str, params: dict) -> list[dict]:
    """One backfill command from the DAG run's params (a list, for the produce task)."""
    try:
        account_id = check_id("account_id", params.get("account_id"))
        tenant = params.get("tenant_id") or None
        if tenant is not None:
            check_id("tenant_id", tenant)
        if provider == "gmail":
            bf = gmail_backfill(params.get("start_date"), params.get("end_date"))
            scope = check_text("scope", params.get("scope"), required=False)
        else:
            bf = imap_backfill(params.get("folder"), params.get("start_uid"), params.get("end_uid"))
            scope = None  # an IMAP backfill names its folder in backfill.folder
        acc = find_account(account_id, provider, tenant)
        cmd = build_command(
            tenant_id=acc["tenant_id"],
            account_id=acc["account_id"],
            provider=provider,
            kind="backfill",
            scope=scope,
            backfill=bf,
            requested_by=f"airflow:{dag_id}",
            traceparent=new_traceparent(),
        )
    except CommandError as e:
        raise _fail(e) from e
    _log().info("backfill command %s for %s/%s: %s", cmd["command_id"], acc["tenant_id"], account_id, bf)
    return [cmd]


# --------------------------------------------------------------------------
# Alternative: let lattice-scheduler produce the incremental commands.


def incremental_mode() -> str:
    """LATTICE_AIRFLOW_INCREMENTAL_MODE: ``direct`` (default: the DAG builds and
    produces the commands) or ``scheduler`` (the DAG runs ``lattice-scheduler
    --once``, which does the same in C, one command per account and scope)."""
    mode = os.environ.get("LATTICE_AIRFLOW_INCREMENTAL_MODE", "direct")
    if mode not in ("direct", "scheduler"):
        raise ValueError(f"LATTICE_AIRFLOW_INCREMENTAL_MODE: {mode!r} is not direct or scheduler")
    return mode


def scheduler_env(topic: str) -> dict[str, str]:
    """The LATTICE_* settings of lattice-scheduler, from the same Airflow
    connections and topic the direct mode uses (secrets stay in the environment
    of the child process; nothing is logged)."""
    from airflow.sdk import BaseHook

    pg = BaseHook.get_connection(POSTGRES_CONN_ID)
    dsn = [f"host={pg.host or '127.0.0.1'}", f"port={pg.port or 5432}"]
    if pg.schema:
        dsn.append(f"dbname={pg.schema}")
    if pg.login:
        dsn.append(f"user={pg.login}")
    for k, v in (pg.extra_dejson or {}).items():  # sslmode, sslrootcert, ...
        if isinstance(v, (str, int)) and re.match(r"^[a-z_]+$", k):
            dsn.append(f"{k}={v}")
    env = {"LATTICE_PG_DSN": " ".join(dsn), "LATTICE_TOPIC_COMMANDS": topic}
    if pg.password:
        env["LATTICE_PG_PASSWORD"] = pg.password
    kafka = BaseHook.get_connection(KAFKA_CONN_ID).extra_dejson or {}
    for k, v in kafka.items():
        if isinstance(v, (str, int, bool)) and re.match(r"^[a-z0-9.]+$", k):
            name = "LATTICE_KAFKA_" + k.upper().replace(".", "_")
            env[name] = str(v).lower() if isinstance(v, bool) else str(v)
    return env


def run_scheduler(provider: str, tenant_id: str | None, topic: str) -> None:
    """``lattice-scheduler --once --provider P [--tenant T]`` ($LATTICE_SCHEDULER_BIN,
    default lattice-scheduler on PATH); its log goes to the task log."""
    import shutil
    import subprocess

    log = _log()
    try:
        tenant = check_id("tenant_id", tenant_id) if tenant_id else None
    except CommandError as e:
        raise _fail(e) from e
    binary = os.environ.get("LATTICE_SCHEDULER_BIN", "lattice-scheduler")
    if not shutil.which(binary):
        raise AirflowFailException(f"{binary} not found (set LATTICE_SCHEDULER_BIN)")
    argv = [binary, "--once", "--provider", provider] + (["--tenant", tenant] if tenant else [])
    env = {**os.environ, "LATTICE_LOG_FORMAT": "text", **scheduler_env(topic)}
    log.info("running %s", " ".join(argv))
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600)
    for line in (proc.stdout + proc.stderr).splitlines():
        log.info("lattice-scheduler: %s", line)
    if proc.returncode == 2:
        raise AirflowFailException("lattice-scheduler: bad usage or configuration (exit 2)")
    if proc.returncode != 0:
        raise RuntimeError(f"lattice-scheduler exited {proc.returncode} (a command was not delivered)")


def _log():
    import logging

    return logging.getLogger("airflow.task")


def command_messages(commands: Iterable[dict]) -> Iterator[tuple[bytes, bytes, list]]:
    """producer_function of the produce task: (key, value, headers) per command,
    each validated again right before it is produced."""
    for cmd in commands:
        try:
            validate_command(cmd)
            value = encode_command(cmd)
        except CommandError as e:
            raise _fail(f"command {cmd.get('command_id')!r} is invalid: {e}") from e
        headers = [("traceparent", cmd["traceparent"].encode("ascii"))] if "traceparent" in cmd else []
        yield cmd["account_id"].encode("utf-8"), value, headers


class LatticeProduceOperator(ProduceToTopicOperator):
    """ProduceToTopicOperator that (1) accepts ``(key, value, headers)`` from the
    producer function, so each command carries its W3C ``traceparent`` as a
    Kafka header too, (2) validates every message before the first is sent,
    and (3) fails the task when a message is not delivered (the stock
    operator only logs delivery errors)."""

    def __init__(self, *, topic: str = TOPIC_TEMPLATE, kafka_config_id: str = KAFKA_CONN_ID, **kwargs):
        kwargs.setdefault("producer_function", command_messages)
        super().__init__(topic=topic, kafka_config_id=kafka_config_id, synchronous=False, **kwargs)

    def execute(self, context) -> list[str]:
        from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
        from airflow.providers.common.compat.module_loading import import_string

        if not self.topic:
            raise AirflowFailException("no command topic (Variable lattice_topic_commands is empty)")
        fn = self.producer_function
        if isinstance(fn, str):
            fn = import_string(fn)
        messages = list(fn(*self.producer_function_args, **self.producer_function_kwargs))
        if not messages:
            self.log.info("no commands to produce")
            return []
        producer = KafkaProducerHook(kafka_config_id=self.kafka_config_id).get_producer()
        failures: list[str] = []

        def delivered(err, msg):
            if err is not None:
                failures.append(f"key {msg.key()!r}: {err}")

        for item in messages:
            key, value, headers = item if len(item) == 3 else (*item, [])
            while True:
                try:
                    producer.produce(self.topic, key=key, value=value, headers=headers, on_delivery=delivered)
                    break
                except BufferError:  # local queue full: let it drain
                    producer.poll(0.5)
            producer.poll(0)
        remaining = producer.flush(120)
        if remaining or failures:
            raise RuntimeError(
                f"{remaining} command(s) not delivered in time, {len(failures)} failed"
                + (f": {'; '.join(failures[:5])}" if failures else "")
            )
        ids = [json.loads(v)["command_id"] for _, v, *_ in messages]
        self.log.info("produced %d command(s) to %s: %s", len(ids), self.topic, ", ".join(ids[:20]))
        return ids


# --------------------------------------------------------------------------
# The DAG factories: each DAG file is its docstring, its params and one call.

START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")


def incremental_dag(provider: str, description: str, doc_md: str | None) -> DAG:
    """lattice__<provider>_sync_incremental: every LATTICE_AIRFLOW_<PROVIDER>_SCHEDULE
    (default every 10 minutes), one incremental command per enabled account
    (build_commands + produce_commands), or in scheduler mode one
    lattice-scheduler run (run_scheduler)."""
    dag_id = f"lattice__{provider}_sync_incremental"
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=os.environ.get(f"LATTICE_AIRFLOW_{provider.upper()}_SCHEDULE", "*/10 * * * *"),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        doc_md=doc_md,
        tags=["lattice", provider],
        params={
            "tenant_id": Param(None, type=["null", "string"], description="Only this tenant's accounts (default: all)"),
        },
    ) as dag:
        if incremental_mode() == "scheduler":

            @task(task_id="run_scheduler")
            def run_scheduler_task() -> None:
                ctx = get_current_context()
                topic = Variable.get(TOPIC_VARIABLE, default=DEFAULT_TOPIC)
                run_scheduler(provider, ctx["params"].get("tenant_id"), topic)

            run_scheduler_task()
        else:

            @task(task_id="build_commands")
            def build_commands() -> list[dict]:
                return incremental_commands(provider, dag_id, get_current_context()["params"].get("tenant_id"))

            LatticeProduceOperator(
                task_id="produce_commands",
                producer_function_kwargs={"commands": build_commands()},
            )
    return dag


def backfill_dag(provider: str, description: str, params: dict, doc_md: str | None) -> DAG:
    """lattice__<provider>_backfill: triggered only; one backfill command from
    the run's params (build_command + produce_command)."""
    dag_id = f"lattice__{provider}_backfill"
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        doc_md=doc_md,
        tags=["lattice", provider, "backfill"],
        params=params,
    ) as dag:

        @task(task_id="build_command")
        def build_command() -> list[dict]:
            return backfill_command(provider, dag_id, dict(get_current_context()["params"]))

        LatticeProduceOperator(
            task_id="produce_command",
            producer_function_kwargs={"commands": build_command()},
        )
    return dag
