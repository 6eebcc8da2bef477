#!/usr/bin/env bash
# Policy delegation servers side by side, one run, same load and same rule:
# reject client 198.18.0.5, rate-limit each client address to 200/60s (450).
#
#   bash bench/scripts/policyd-compare.sh [OUT_DIR]
#
# Needs: postfwd (apt), policyd-rate-limit (pip, in /tmp/prl-venv), release
# builds of mbd and policyd_load. Starts every server on loopback, stops each
# by its own PID. Writes JSON reports and prints a markdown table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp/policyd-compare}
DUR=${DUR:-20s}
LOAD="$ROOT/target/release/policyd_load"
MBD="$ROOT/target/release/mbd"
mkdir -p "$OUT"
command -v postfwd2 >/dev/null || apt-get install -y postfwd >/dev/null
[ -x /tmp/prl-venv/bin/policyd-rate-limit ] || { python3 -m venv /tmp/prl-venv && /tmp/prl-venv/bin/pip -q install policyd-rate-limit; }
[ -x "$LOAD" ] && [ -x "$MBD" ] || (cd "$ROOT" && cargo build --release -p mb-bench --bin policyd_load -p mb-shards --bin mbd)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# --- mailborder
W="$OUT/mbd"; rm -rf "$W"; mkdir -p "$W"
cat > "$W/policy.toml" <<'P'
[global]
sender_block = ["198.18.0.5"]
block_reply = "550 5.7.1 blocked client"

[[ratelimit]]
name = "client"
key = ["client_ip"]
windows = ["200/1m"]
reply = "450 4.7.1 rate limit exceeded"
P
cat > "$W/mbd.toml" <<P
[daemon]
state_dir = "$W/state"
[milter]
socket = ""
tcp = ["127.0.0.1:61010"]
[eval]
policy = "$W/policy.toml"
policyd_socket = ""
policyd_tcp = ["127.0.0.1:61011"]
P
"$MBD" --config "$W/mbd.toml" >"$W/out.log" 2>"$W/err.log" & MBD_PID=$!; PIDS+=("$MBD_PID")

# --- postfwd2
W="$OUT/pfw"; rm -rf "$W"; mkdir -p "$W"
cat > "$W/postfwd.cf" <<'P'
id=BLOCK01; client_address==198.18.0.5; action=REJECT 5.7.1 blocked client
id=RATE01; protocol_state==RCPT; action=rate(client_address/200/60/450 4.7.1 rate limit exceeded)
P
postfwd2 -f "$W/postfwd.cf" --server_socket tcp:127.0.0.1:61001 --cache_proto unix \
  --cache_port "$W/cache.sock" --pidfile "$W/postfwd2.pid" -u root -g root --nodns --cache=0 >"$W/log" 2>&1 || true

# --- policyd-rate-limit on tmpfs
W="$OUT/prl"; rm -rf "$W" /dev/shm/prl-cmp; mkdir -p "$W" /dev/shm/prl-cmp
cat > "$W/prl.yaml" <<P
debug: False
user: "root"
group: "root"
pidfile: "$W/prl.pid"
sqlite_config:
    database: "/dev/shm/prl-cmp/db.sqlite3"
backend: 0
SOCKET: ["127.0.0.1", 61002]
socket_permission: 0666
limits:
    - [200, 60]
limits_by_id: {}
sql_limits_by_id: ""
limit_by_sasl: False
limit_by_sender: False
limit_by_ip: True
limited_networks: ["198.18.0.0/15"]
success_action: "dunno"
fail_action: "defer_if_permit Rate limit reach, retry later"
db_error_action: "dunno"
report: False
delay_to_close: 300
count_mode: 0
P
/tmp/prl-venv/bin/policyd-rate-limit -f "$W/prl.yaml" >"$W/log" 2>&1 & PRL_PID=$!; PIDS+=("$PRL_PID")
sleep 3
PFW_PIDS=$(pgrep -f "postfwd2 -f $OUT/pfw/postfwd.cf" | tr '\n' ' ' || true)
for p in $PFW_PIDS; do PIDS+=("$p"); done
# postfwd2 forks children under the master; pass the whole tree for CPU.
PFW_TREE=$(for p in $PFW_PIDS; do echo "$p"; pgrep -P "$p" || true; done | sort -u | sed 's/^/--server-pid /' | tr '\n' ' ')

run() { # name target conns pid-args
  echo "== $1 c=$3 $(uptime)" >&2
  "$LOAD" --target "$2" --connections "$3" --duration "$DUR" --warmup 20 --json $4 > "$OUT/$1-c$3.json"
}
for c in 1 8; do
  run mailborder inet:127.0.0.1:61011 $c "--server-pid $MBD_PID"
  run postfwd2 inet:127.0.0.1:61001 $c "$PFW_TREE"
  run policyd-rate-limit inet:127.0.0.1:61002 $c "--server-pid $PRL_PID"
done
python3 - "$OUT" <<'PY'
import json,sys,glob,os
print("| server | conns | req/s | p50 | p99 | p99.9 | server CPU µs/req | actions |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for f in sorted(glob.glob(os.path.join(sys.argv[1],"*.json"))):
    r=json.load(open(f)); name,c=os.path.basename(f)[:-5].rsplit("-c",1)
    lat=r.get("latency") or {}
    acts=", ".join(f"{k} {v}" for k,v in sorted(r.get("actions",{}).items()))
    cpu=r.get("server_cpu_us_per_request")
    print(f"| {name} | {c} | {r.get('requests_per_s',0):.0f} | {lat.get('p50_us',0)/1000:.2f} ms | {lat.get('p99_us',0)/1000:.2f} ms | {lat.get('p999_us',0)/1000:.2f} ms | {cpu if cpu is None else round(cpu)} | {acts} |")
PY
