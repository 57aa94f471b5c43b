# A private PostgreSQL cluster for a test that stops Postgres (the stack's is
# shared and never stopped): initdb into a scratch directory, its own port,
# the role and database the programs expect, the repository's migrations.
# Source after common.sh; needs $WORK and $BUILD. After lt_pg_private_up,
# LATTICE_PG_DSN and LATTICE_PG_PASSWORD (exported) point at it, so psqlq and
# every program started later use it.
#   lt_pg_private_up        create and start it, migrate
#   lt_pg_private_stop      immediate shutdown (as a crash: no checkpoint)
#   lt_pg_private_start     start it again (crash recovery)
#   lt_pg_private_down      stop it for good (cleanup)
LT_PG_BIN=${LT_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
# initdb refuses root: as root, the cluster is the postgres user's
if [ "$(id -u)" = 0 ]; then LT_PG_USER=postgres; else LT_PG_USER=$(id -un); fi
lt_pg_as() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$LT_PG_USER" -- "$@"); else "$@"; fi; }

lt_pg_private_start() {
  lt_pg_as "$LT_PG_BIN/pg_ctl" -D "$WORK/pgh/data" -l "$WORK/pgh/pg.log" -w -t 120 \
    -o "-p $LT_PG_PORT -k $WORK/pgh -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
}

lt_pg_private_stop() {
  lt_pg_as "$LT_PG_BIN/pg_ctl" -D "$WORK/pgh/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
}

lt_pg_private_down() {
  if [ -d "$WORK/pgh/data" ]; then lt_pg_private_stop; fi
}

lt_pg_private_up() {
  LT_PG_PORT=$(lt_free_port)
  local pw
  pw=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  chmod 711 "$WORK"
  mkdir -p "$WORK/pgh"
  echo "$pw" >"$WORK/pgh/pw"
  [ "$(id -u)" = 0 ] && chown -R "$LT_PG_USER" "$WORK/pgh"
  lt_pg_as "$LT_PG_BIN/initdb" -D "$WORK/pgh/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$WORK/pgh/pw" >"$WORK/initdb.log" 2>&1 ||
    { echo "initdb of the private Postgres failed" >&2; cat "$WORK/initdb.log" >&2; exit 1; }
  rm -f "$WORK/pgh/pw"
  lt_pg_private_start
  PGPASSWORD=$pw psql "host=127.0.0.1 port=$LT_PG_PORT dbname=postgres user=postgres" -X -q \
    -v ON_ERROR_STOP=1 -c "CREATE ROLE lattice LOGIN PASSWORD '$pw'" -c "CREATE DATABASE lattice OWNER lattice" >/dev/null
  export LATTICE_PG_DSN="host=127.0.0.1 port=$LT_PG_PORT dbname=lattice user=lattice"
  export LATTICE_PG_PASSWORD=$pw
  "$BUILD/tools/lattice-migrate" --dir "$LT_LIB/../../../migrations" >"$WORK/migrate.log" 2>&1 ||
    { echo "lattice-migrate on the private Postgres failed" >&2; cat "$WORK/migrate.log" >&2; exit 1; }
}
