#!/usr/bin/env bash
# lattice-gmail-probe against the stack's Gmail emulator: it takes its
# defaults from the settings table (LATTICE_GMAIL_*, LATTICE_TLS_CA_FILE:
# validated, shown in --help) and its options override them. Its own
# emulator user; nothing global on the emulator is changed.
set -euo pipefail
BUILD=${1:?build dir}
. "$(dirname "$0")/lib/common.sh"
lt_require LATTICE_CA_FILE LATTICE_GMAIL_API_URL LATTICE_GMAIL_TOKEN_URL LATTICE_TEST_GMAIL_URL
PROBE=$BUILD/tools/lattice-gmail-probe
USER1=probe$RUN@example.com
WORK=$(mktemp -d)
cleanup() { lt_gmail_ctl DELETE "/users/$USER1" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

lt_gmail_ctl POST /users "{\"email\":\"$USER1\",\"refresh_token\":\"rt-$RUN\",\"client_id\":\"cid-$RUN\",\"client_secret\":\"cs-$RUN\",\"generate\":{\"count\":60,\"size\":3000}}" >/dev/null
export PROBE_SECRET=cs-$RUN PROBE_RT=rt-$RUN
probe() { # probe [ENV=VALUE...] -- [options]: output in $WORK/out, exit code echoed
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  local rc=0
  env "${envs[@]}" "$PROBE" --client-id "cid-$RUN" --client-secret-env PROBE_SECRET \
    --refresh-token-env PROBE_RT --label INBOX "$@" >"$WORK/out" 2>&1 || rc=$?
  echo "$rc"
}
secs() { grep -o 'in [0-9.]* s' "$WORK/out" | head -1 | cut -d' ' -f2; }
BASE=(LATTICE_TLS_CA_FILE="$LATTICE_CA_FILE")

# settings from the table: API/token URLs and the CA
rc=$(probe "${BASE[@]}" -- --fetch 10)
check "probe with the table's settings: exit 0 ($(cat "$WORK/out"))" [ "$rc" = 0 ]
check "listed 10, fetched 10" grep -q 'account 1: ok .*listed 10, fetched 10 ' "$WORK/out"
check "no secret in the output" bash -c "! grep -qE 'cs-$RUN|rt-$RUN|ya29' '$WORK/out'"

# without LATTICE_TLS_CA_FILE the emulator's certificate is not trusted (verified, not
# skipped); LATTICE_GMAIL_MAX_RETRIES=0 (from the table too) makes it fail at once
T0=$(date +%s)
rc=$(probe LATTICE_TLS_CA_FILE= LATTICE_GMAIL_MAX_RETRIES=0 -- --fetch 1)
check "no CA: fails ($(head -c 300 "$WORK/out"))" [ "$rc" = 1 ]
check "no CA: a certificate error" grep -q 'certificate' "$WORK/out"

# a value out of the table's range is refused before anything is sent
rc=$(probe "${BASE[@]}" LATTICE_GMAIL_MAX_INFLIGHT=0 -- --fetch 1)
check "LATTICE_GMAIL_MAX_INFLIGHT=0: exit 2" [ "$rc" = 2 ]
check "LATTICE_GMAIL_MAX_INFLIGHT=0: the table's error" grep -q 'bad configuration: .*LATTICE_GMAIL_MAX_INFLIGHT' "$WORK/out"
rc=$(probe "${BASE[@]}" LATTICE_GMAIL_API_URL=https://127.0.0.1:1 LATTICE_GMAIL_MAX_RETRIES=0 -- --fetch 1)
check "LATTICE_GMAIL_API_URL is used: a closed port fails ($rc)" [ "$rc" = 1 ]
# (with the default 8 retries from 1 s, doubling, each would take minutes: 90 s tells them apart)
check "LATTICE_GMAIL_MAX_RETRIES=0 is used: both failures within $((90 * LT_TF)) s" \
  [ $(( $(date +%s) - T0 )) -lt $((90 * LT_TF)) ]

# LATTICE_GMAIL_QUOTA_UNITS_PER_S paces the client (bucket starts empty): 50 gets + list +
# profile = 256 units at 25 units/s take > 8 s; the --quota option overrides it (unpaced,
# the probe stays well under 8 s even on a loaded machine). Under valgrind (LT_TF) the
# unpaced probe is slower: the rate is divided by LT_TF and the bound multiplied by it.
PACE=$((25 / LT_TF)); [ "$PACE" -ge 1 ] || PACE=1
BOUND=$((8 * LT_TF))
rc=$(probe "${BASE[@]}" LATTICE_GMAIL_QUOTA_UNITS_PER_S=$PACE -- --fetch 50)
check "quota $PACE units/s from the table: ok and >= $BOUND s ($(secs) s)" \
  awk -v rc="$rc" -v s="$(secs)" -v b="$BOUND" 'BEGIN { exit !(rc == 0 && s >= b) }'
rc=$(probe "${BASE[@]}" LATTICE_GMAIL_QUOTA_UNITS_PER_S=$PACE -- --fetch 50 --quota 5000)
check "--quota 5000 overrides it: < $BOUND s ($(secs) s)" \
  awk -v rc="$rc" -v s="$(secs)" -v b="$BOUND" 'BEGIN { exit !(rc == 0 && s < b) }'
rc=$(probe "${BASE[@]}" -- --fetch 1 --max-inflight 0)
check "--max-inflight 0 refused" [ "$rc" = 2 ]

"$PROBE" --help >"$WORK/help"
check "--help lists the Gmail settings" grep -q 'LATTICE_GMAIL_MAX_INFLIGHT' "$WORK/help"
check "--help lists LATTICE_TLS_CA_FILE" grep -q 'LATTICE_TLS_CA_FILE' "$WORK/help"

lt_summary test_gmail_probe
