#!/usr/bin/env bash
# Reference verdicts from SpamAssassin's own spamd (4.0.1, Debian 12) for the
# content-scanner agreement check (issue "filter": agree with spamd on >= 99 %
# of messages, same rules, network tests off, Bayes off).
#
#   bash bench/scripts/spamd-reference.sh [OUT.jsonl]          # scan the corpus (resumable)
#   bash bench/scripts/spamd-reference.sh --config-only        # write the private config, print it, exit
#   bash bench/scripts/spamd-reference.sh --lint               # spamassassin --lint -D on that config, exit
#
# What it does:
#   1. installs spamassassin + spamd + spamc (Debian 12, 4.0.1) if missing (idempotent);
#   2. builds a private state dir ($SPAMD_REF_STATE, default /tmp/spamd-ref):
#        site/   copies of /etc/spamassassin/*.pre (Debian's plugin set, unchanged)
#                + zz_mailborder_reference.cf (Bayes/AWL/TxRep/DNS off, see below);
#                Debian's 65_debian.cf and local.cf are NOT copied (not stock rules);
#        home/   debian-spamd's private home (-H), nothing is written to /var/lib/spamassassin;
#   3. starts spamd -L -x with -C (rules_filename) = the shared stock rules dir, on a unix socket
#      under the state dir, 2 children; waits for PONG;
#   4. runs spamd_reference_scan.py (SYMBOLS over the socket, concurrency 2, bounded timeout),
#      appending one JSON line per message to OUT (default /tmp/spamd-reference.jsonl) and
#      skipping files already there (resume = run the same command again);
#   5. stops spamd by its PID (SIGTERM, then SIGKILL for that PID only).
#
# Env: SPAMD_REF_STATE, SPAMD_REF_RULES, SPAMD_REF_CORPUS, SPAMD_REF_CHILDREN (<= 2 on the shared
# box), SPAMD_REF_LIMIT (stop after N new messages; 0 = all), SPAMD_REF_TIMEOUT (s per message),
# SPAMD_REF_STRACE=FILE: run spamd under `strace -f -e trace=network` (from exec on, so start-up
# is covered too) to prove that no DNS / non-loopback traffic happens; slows spamd, so do not
# quote the throughput of such a run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=scan
case "${1:-}" in
  --config-only) MODE=config; shift ;;
  --lint) MODE=lint; shift ;;
esac
OUT=${1:-/tmp/spamd-reference.jsonl}
STATE=${SPAMD_REF_STATE:-/tmp/spamd-ref}
RULES=${SPAMD_REF_RULES:-/work/shared/corpus/rules/spamassassin}
CORPUS=${SPAMD_REF_CORPUS:-/work/shared/corpus}
CHILDREN=${SPAMD_REF_CHILDREN:-2}
LIMIT=${SPAMD_REF_LIMIT:-0}
STRACE_OUT=${SPAMD_REF_STRACE:-}
TIMEOUT=${SPAMD_REF_TIMEOUT:-120}
SOCK="$STATE/spamd.sock"
SITE="$STATE/site"
HOMED="$STATE/home"
LOG="$STATE/spamd.log"
PIDF="$STATE/spamd.pid"

log() { printf '%s spamd-reference: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- 1. install (idempotent)
if ! command -v spamd >/dev/null || ! command -v spamc >/dev/null || ! command -v spamassassin >/dev/null; then
  log "installing spamassassin spamd spamc (Debian 12)"
  # Debian's policy-rc.d (if any) keeps the packaged spamd.service from starting; we never use it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends spamassassin spamd spamc >/dev/null
fi
SA_VER=$(spamd --version | sed -n 's/^SpamAssassin Server version //p')
[ "$SA_VER" = "4.0.1" ] || log "WARNING: spamd $SA_VER, expected 4.0.1"
[ -f "$RULES/50_scores.cf" ] || { log "no stock rules in $RULES"; exit 1; }

# ---------------------------------------------------------------- 2. private config
mkdir -p "$SITE" "$HOMED"
rm -f "$SITE"/*.pre "$SITE"/*.cf
cp /etc/spamassassin/*.pre "$SITE"/
# use_auto_whitelist / use_txrep belong to the AWL / TxRep plugins, which Debian's .pre files do
# not load; they are guarded so the config lints clean either way.
cat > "$SITE/zz_mailborder_reference.cf" <<'CF'
# mailborder reference run: local tests only, no learning, no reputation state.
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
dns_available no
lock_method flock
ifplugin Mail::SpamAssassin::Plugin::AWL
use_auto_whitelist 0
endif
ifplugin Mail::SpamAssassin::Plugin::TxRep
use_txrep 0
endif
CF
chown -R debian-spamd:debian-spamd "$HOMED"

if [ "$MODE" = config ]; then
  echo "# site dir $SITE"; ls -l "$SITE"
  echo "# loaded plugins:"; grep -h '^[[:space:]]*loadplugin' "$SITE"/*.pre
  echo "# $SITE/zz_mailborder_reference.cf"; cat "$SITE/zz_mailborder_reference.cf"
  exit 0
fi
if [ "$MODE" = lint ]; then
  # Same config as spamd (-C / --siteconfigpath / -L); -D shows the files read and plugins loaded.
  exec spamassassin --lint -L -x -C "$RULES" --siteconfigpath="$SITE" -D config,plugin,dns 2>&1
fi

# ---------------------------------------------------------------- 3. start spamd
SPAMD_PID=
STRACE_PID=
stop_spamd() {
  [ -n "$SPAMD_PID" ] || return 0
  if kill -0 "$SPAMD_PID" 2>/dev/null; then
    log "stopping spamd pid $SPAMD_PID"
    kill -TERM "$SPAMD_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SPAMD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SPAMD_PID" 2>/dev/null && kill -KILL "$SPAMD_PID" 2>/dev/null || true
  fi
  SPAMD_PID=
  if [ -n "$STRACE_PID" ]; then  # strace exits once its tracees are gone
    for _ in $(seq 1 100); do kill -0 "$STRACE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$STRACE_PID" 2>/dev/null && kill -TERM "$STRACE_PID" 2>/dev/null || true
    STRACE_PID=
  fi
}
trap stop_spamd EXIT
trap 'exit 130' INT TERM

if [ -S "$SOCK" ] && [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; then
  log "a spamd from an earlier run is still up (pid $(cat "$PIDF")); stop it first: kill $(cat "$PIDF")"
  exit 1
fi
rm -f "$SOCK"
SPAMD_CMD=(spamd -L -x -u debian-spamd -g debian-spamd -H "$HOMED"
  -C "$RULES" --siteconfigpath="$SITE"
  --socketpath="$SOCK" --socketowner=root --socketgroup=root --socketmode=0600
  --max-children="$CHILDREN" --min-children="$CHILDREN" --min-spare=1 --max-spare="$CHILDREN"
  --timeout-child=300 --pidfile="$PIDF" -s "$LOG")
log "starting: ${SPAMD_CMD[*]}"
printf '%s\n' "${SPAMD_CMD[*]}" > "$STATE/spamd.cmd"
if [ -n "$STRACE_OUT" ]; then
  command -v strace >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y strace >/dev/null
  rm -f "$PIDF"
  setsid strace -f -qq -e trace=network -o "$STRACE_OUT" "${SPAMD_CMD[@]}" >"$STATE/spamd.stdout" 2>&1 &
  STRACE_PID=$!
  for _ in $(seq 1 600); do [ -s "$PIDF" ] && break; sleep 0.1; done
  SPAMD_PID=$(cat "$PIDF")   # spamd's own pid (a child of strace), stopped by that pid
else
  setsid "${SPAMD_CMD[@]}" >"$STATE/spamd.stdout" 2>&1 &
  SPAMD_PID=$!
fi
python3 - "$SOCK" "$SPAMD_PID" <<'PY'
import socket, sys, time, os
sock, pid = sys.argv[1], int(sys.argv[2])
t0 = time.time()
while time.time() - t0 < 120:
    if not os.path.exists("/proc/%d" % pid):
        sys.exit("spamd exited during start-up")
    try:
        s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sock)
        s.sendall(b"PING SPAMC/1.5\r\n\r\n")
        if b"PONG" in s.recv(100):
            print("spamd: PONG after %.2fs" % (time.time() - t0), file=sys.stderr); sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit("spamd: no PONG within 120 s")
PY
log "spamd pid $SPAMD_PID up; uptime: $(uptime)"

# ---------------------------------------------------------------- 4. scan
python3 "$HERE/spamd_reference_scan.py" --socket "$SOCK" --spamd-pid "$SPAMD_PID" \
  --corpus "$CORPUS" --out "$OUT" --concurrency 2 --timeout "$TIMEOUT" --limit "$LIMIT" \
  ham/spamassassin spam/spamassassin malformed mixed

# ---------------------------------------------------------------- 5. stop
stop_spamd
log "done; uptime: $(uptime)"
