#!/usr/bin/env bash
# delivery-bench.sh: after-queue path benchmark (issue 5), loopback only.
#
# Three configurations, interleaved within every repetition (order rotated):
#   a  smtp-source -> mbd ingress -> mbd relay = smtp-sink            (mbd alone)
#   b  smtp-source -> Postfix (content_filter = mbfilter:[127.0.0.1]:<mbd B>)
#        -> mbd B -> Postfix reinjection smtpd -> smtp-sink           (full path)
#   c  smtp-source -> Postfix (no content_filter) -> smtp-sink        (Postfix alone)
# for every case (size:sessions:count) and every filter mode
# (off | small | stock), then fio/dd on the spool's filesystem.
#
# It starts: two mbd (release build, 2 shards each), two smtp-sink, one
# private Postfix through ../shared/harness/postfix/pf-harness (--no-sink),
# and stops exactly those, by PID (Postfix via `pf-harness stop`). Bounded:
# the whole run is under `timeout $LIMIT` (default 2400 s), every measured run
# under RUN_TIMEOUT (default 300 s).
#
# Usage (as root, from anywhere; builds nothing, run
#   cargo build --release -p mb-shards -p mbctl   first):
#   bash bench/scripts/delivery-bench.sh
# Knobs (environment):
#   WORK=/var/tmp/mb-delivery-bench   spool, Postfix queue, logs, fio file (keep it on the disk you measure)
#   OUT=$WORK/results                 runs.jsonl, summary.md, fio.txt
#   REPS=2  CASES="2048:20:3000 51200:20:2000"  CONFIGS="a b c"  FILTERS="off small"
#   WARMUP=200  RUN_TIMEOUT=300  LIMIT=2400  FIO=1  FIO_SECONDS=15
#   STOCK_RULES=/work/shared/corpus/rules/spamassassin   (FILTERS may include "stock")
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ROOT
export WORK=${WORK:-/var/tmp/mb-delivery-bench}
export OUT=${OUT:-$WORK/results}
export REPS=${REPS:-2}
export CASES=${CASES:-"2048:20:3000 51200:20:2000"}
export CONFIGS=${CONFIGS:-"a b c"}
export FILTERS=${FILTERS:-"off small"}
export WARMUP=${WARMUP:-200}
export RUN_TIMEOUT=${RUN_TIMEOUT:-300}
export FIO=${FIO:-1}
export FIO_SECONDS=${FIO_SECONDS:-15}
export STOCK_RULES=${STOCK_RULES:-/work/shared/corpus/rules/spamassassin}
export PF_HARNESS=${PF_HARNESS:-$ROOT/../shared/harness/postfix/pf-harness}
LIMIT=${LIMIT:-2400}

for bin in "$ROOT/target/release/mbd" "$ROOT/target/release/mbctl"; do
    [ -x "$bin" ] || { echo "missing $bin: cargo build --release -p mb-shards -p mbctl" >&2; exit 1; }
done
for bin in smtp-source smtp-sink postconf postfix; do
    command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "missing $bin (apt install postfix)" >&2; exit 1; }
done
[ -x "$PF_HARNESS" ] || { echo "missing $PF_HARNESS" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (Postfix master, smtp-sink -u postfix)" >&2; exit 1; }

mkdir -p "$WORK" "$OUT"
DRIVER="$WORK/delivery-bench-driver.py"
cat > "$DRIVER" <<'PY'
import json, os, re, shutil, signal, statistics, subprocess, sys, time

ROOT, WORK, OUT = os.environ["ROOT"], os.environ["WORK"], os.environ["OUT"]
REPS = int(os.environ["REPS"])
CASES = [tuple(int(x) for x in c.split(":")) for c in os.environ["CASES"].split()]
CONFIGS = os.environ["CONFIGS"].split()
FILTERS = os.environ["FILTERS"].split()
WARMUP = int(os.environ["WARMUP"])
RUN_TIMEOUT = float(os.environ["RUN_TIMEOUT"])
PFH = os.environ["PF_HARNESS"]
MBD = os.path.join(ROOT, "target/release/mbd")
MBCTL = os.path.join(ROOT, "target/release/mbctl")
SRC = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
# ports (loopback)
A_IN, A_SINK = 12024, 12025           # mbd A ingress, its relay (smtp-sink)
B_IN = 12034                          # mbd B ingress (Postfix content_filter)
PF_PORT, PF_SINK, REINJ = 12035, 12036, 12037
PFH_DIR = os.path.join(WORK, "pfh")
PF_ETC = os.path.join(PFH_DIR, "etc")
TICK = os.sysconf("SC_CLK_TCK")

started = []   # Popen objects we started
SINK_PROCS = []
pf_started = False


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def spawn(argv, out):
    p = subprocess.Popen(argv, stdout=open(out, "wb"), stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    started.append(p)
    return p


def stop(p, grace=20):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in started:
        started.remove(p)


def cleanup(*_):
    global pf_started
    for p in list(started):
        stop(p)
    if pf_started:
        subprocess.run([PFH, "--dir", PFH_DIR, "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        pf_started = False


def on_signal(sig, _f):
    log("signal %d: stopping what we started" % sig)
    cleanup()
    sys.exit(128 + sig)


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)


def listening(port):
    want = ":%04X" % port
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in open(fn).readlines()[1:]:
                f = line.split()
                if f[1].endswith(want) and f[3] == "0A":
                    return True
        except FileNotFoundError:
            pass
    return False


def wait(cond, timeout, what, step=0.05):
    t = time.time() + timeout
    while time.time() < t:
        if cond():
            return
        time.sleep(step)
    raise RuntimeError("timed out waiting for " + what)


SINK_RE = re.compile(rb"mesg=(\d+)")


def sink_count(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            n = f.tell()
            f.seek(max(0, n - 200))
            tail = f.read()
    except FileNotFoundError:
        return 0
    m = SINK_RE.findall(tail)
    return int(m[-1]) if m else 0


def stat_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        r = f.read().rsplit(")", 1)[1].split()
    return int(r[1]), int(r[11]), int(r[12]), int(r[13]), int(r[14])


def proc_cpu(pid):
    _pp, u, s, _cu, _cs = stat_of(pid)
    return u / TICK, s / TICK


def tree_cpu(root):
    """user, sys seconds of a process tree: root incl. its reaped children, plus
    every live descendant (as pf-harness counts Postfix)."""
    kids, stats = {}, {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                st = stat_of(int(e))
            except (OSError, IndexError, ValueError):
                continue
            stats[int(e)] = st
            kids.setdefault(st[0], []).append(int(e))
    if root not in stats:
        return 0.0, 0.0
    _p, u, s, cu, cs = stats[root]
    U, S = u + cu, s + cs
    stack, seen = list(kids.get(root, [])), {root}
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        _p, u, s, _cu, _cs = stats[p]
        U += u
        S += s
        stack.extend(kids.get(p, []))
    return U / TICK, S / TICK


def io_write_bytes(pid):
    for line in open("/proc/%d/io" % pid):
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def disk_of(path):
    st = os.stat(path)
    maj, mnr = os.major(st.st_dev), os.minor(st.st_dev)
    for line in open("/proc/diskstats"):
        f = line.split()
        if int(f[0]) == maj and int(f[1]) == mnr:
            return f[2]
    return None


def disk_written(dev):
    """(sectors written, write ios, flushes) of a block device."""
    for line in open("/proc/diskstats"):
        f = line.split()
        if f[2] == dev:
            fl = int(f[18]) if len(f) > 18 else 0
            return int(f[9]), int(f[7]), fl
    return 0, 0, 0


def machine_busy():
    """busy CPU seconds of the whole machine (user nice system irq softirq steal)."""
    f = open("/proc/stat").readline().split()
    v = [int(x) for x in f[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICK


def ours_cpu(mbds, sinks_p):
    """CPU seconds of everything this run started: both mbd, Postfix's tree,
    the sinks, and (reaped children + self) smtp-source, mbctl and this driver."""
    import resource
    t = 0.0
    for m in mbds:
        t += sum(proc_cpu(m.p.pid))
    if pf_master():
        t += sum(tree_cpu(pf_master()))
    for p in sinks_p:
        t += sum(proc_cpu(p.pid))
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        t += ru.ru_utime + ru.ru_stime
    return t


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


# ------------------------------------------------------------------ mbd

class Mbd:
    def __init__(self, name, ingress, relay, filt):
        self.name, self.ingress, self.relay, self.filt = name, ingress, relay, filt
        self.dir = os.path.join(WORK, "mbd-" + name)
        self.state = os.path.join(self.dir, "state")
        self.spool = os.path.join(self.dir, "spool")
        self.ctl = os.path.join(self.state, "mbd.ctl")

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.state)
        os.makedirs(self.spool)
        filt = ""
        if self.filt == "small":
            filt = '[filter]\nrules = "%s"\n' % os.path.join(WORK, "small-rules.cf")
        elif self.filt == "stock":
            filt = '[filter]\nrules = "%s"\n' % os.environ["STOCK_RULES"]
        cfg = ('[daemon]\nstate_dir = "{st}"\nshutdown_grace = "5s"\n\n[shards]\ncount = 2\n\n'
               '[milter]\nsocket = "{st}/mb-milter.sock"\n\n'
               '[delivery]\nenabled = true\nlisten = ["127.0.0.1:{i}"]\nrelay = "127.0.0.1:{r}"\n'
               'spool_dir = "{sp}"\n\n{f}').format(st=self.state, i=self.ingress, r=self.relay,
                                                   sp=self.spool, f=filt)
        self.conf = os.path.join(self.dir, "mbd.toml")
        open(self.conf, "w").write(cfg)
        t0 = time.time()
        self.p = spawn([MBD, "-c", self.conf], os.path.join(self.dir, "mbd.log"))
        wait(lambda: self.p.poll() is None and listening(self.ingress) and os.path.exists(self.ctl),
             180, "mbd %s on %d" % (self.name, self.ingress))
        wait(lambda: self.status() is not None, 60, "mbctl on " + self.name)
        log("mbd %s pid %d ready in %.1fs (filter %s)" % (self.name, self.p.pid, time.time() - t0,
                                                          self.filt))

    def status(self):
        r = subprocess.run([MBCTL, "--socket", self.ctl, "--json", "shard", "status"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return None
        tot = {}
        for s in json.loads(r.stdout):
            for k, v in s.get("queue", {}).items():
                if isinstance(v, int) and not isinstance(v, bool):
                    tot[k] = tot.get(k, 0) + v
        return tot

    def idle(self):
        s = self.status()
        return s is not None and s["messages"] == 0 and s["ingress_connections"] == 0

    def stop(self):
        stop(self.p, 30)


# -------------------------------------------------------------- Postfix

def pf_queue():
    n = 0
    for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _r, _d, files in os.walk(os.path.join(PFH_DIR, "spool", sub)):
            n += len(files)
    return n


def pf_master():
    try:
        return int(open(os.path.join(PFH_DIR, "spool/pid/master.pid")).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pf(*args):
    subprocess.run(list(args), check=True, stdout=subprocess.DEVNULL)


def pf_start():
    global pf_started
    subprocess.run([PFH, "--dir", PFH_DIR, "stop"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    subprocess.run([PFH, "--dir", PFH_DIR, "start", "--port", str(PF_PORT), "--sink-port",
                    str(PF_SINK), "--no-sink"], check=True)
    pf_started = True
    # the filter transport (XFORWARD only towards mbd) and the reinjection smtpd
    pf(POSTCONF, "-c", PF_ETC, "-M", "mbfilter/unix=mbfilter unix - - n - - smtp")
    pf(POSTCONF, "-c", PF_ETC, "-P", "mbfilter/unix/smtp_send_xforward_command=yes")
    svc = "127.0.0.1:%d/inet" % REINJ
    pf(POSTCONF, "-c", PF_ETC, "-M", "%s=127.0.0.1:%d inet n - n - - smtpd" % (svc, REINJ))
    for o in ("content_filter=",
              "receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters",
              "smtpd_authorized_xforward_hosts=127.0.0.0/8", "mynetworks=127.0.0.0/8"):
        pf(POSTCONF, "-c", PF_ETC, "-P", "%s/%s" % (svc, o))
    pf_filter(None)
    wait(lambda: listening(REINJ) and listening(PF_PORT), 30, "Postfix listeners")


pf_current = ["unset"]


def pf_filter(port):
    val = "mbfilter:[127.0.0.1]:%d" % port if port else ""
    if pf_current[0] == val:
        return
    pf(POSTCONF, "-c", PF_ETC, "-e", "content_filter=" + val)
    pf(POSTFIX, "-c", PF_ETC, "reload")
    time.sleep(2)
    pf_current[0] = val


# ------------------------------------------------------------------ runs

def smtp_source(port, size, sessions, count):
    return [SRC, "-A", "-s", str(sessions), "-m", str(count), "-l", str(size), "-M",
            "source.example", "-f", "bench@source.example", "-t", "rcpt@dest.example",
            "127.0.0.1:%d" % port]


def wait_idle(mbds):
    wait(lambda: pf_queue() == 0 and all(m.idle() for m in mbds), 300, "queues to drain", 0.2)
    time.sleep(0.5)


def one_run(cfg, filt, size, sessions, count, rep, mbds, sinks, dev, warm=False):
    a, b = mbds
    port = A_IN if cfg == "a" else PF_PORT
    sinkf = sinks["a"] if cfg == "a" else sinks["pf"]
    if cfg in ("b", "c"):
        pf_filter(B_IN if cfg == "b" else None)
    if not warm and WARMUP:
        one_run(cfg, filt, 2048, sessions, WARMUP, rep, mbds, sinks, dev, warm=True)
    wait_idle(mbds)
    mb = a if cfg == "a" else b
    s0 = sink_count(sinkf)
    load0 = loadavg()
    st0 = mb.status()
    mcpu0 = proc_cpu(mb.p.pid)
    pcpu0 = tree_cpu(pf_master()) if pf_master() else (0.0, 0.0)
    io0 = io_write_bytes(mb.p.pid)
    dk0 = disk_written(dev)
    busy0, ours0 = machine_busy(), ours_cpu(mbds, SINK_PROCS)
    t0 = time.monotonic()
    src = subprocess.Popen(smtp_source(port, size, sessions, count), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    t_inj = t_del = None
    n = 0
    while True:
        now = time.monotonic()
        if t_inj is None and src.poll() is not None:
            t_inj = now - t0
        n = sink_count(sinkf) - s0
        if n >= count:
            t_del = now - t0
            break
        if now - t0 > RUN_TIMEOUT:
            break
        time.sleep(0.01)
    if src.poll() is None:
        if t_del is None:
            src.kill()
        src.wait()
        t_inj = t_inj or time.monotonic() - t0
    srcout = src.stdout.read().decode(errors="replace")
    st1 = mb.status()
    mcpu1 = proc_cpu(mb.p.pid)
    pcpu1 = tree_cpu(pf_master()) if pf_master() else (0.0, 0.0)
    io1 = io_write_bytes(mb.p.pid)
    dk1 = disk_written(dev)
    busy1, ours1 = machine_busy(), ours_cpu(mbds, SINK_PROCS)
    load1 = loadavg()
    if warm:
        return None
    d = {k: st1[k] - st0[k] for k in st0 if k in st1}
    e2e = t_del or (time.monotonic() - t0)
    via_mbd = cfg in ("a", "b")
    r = {
        "config": cfg, "filter": filt, "size": size, "sessions": sessions, "count": count,
        "rep": rep, "delivered": n, "complete": t_del is not None,
        "inject_s": round(t_inj, 3), "e2e_s": round(e2e, 3),
        "received_mps": round(count / t_inj, 1), "delivered_mps": round(n / e2e, 1),
        "mbd_received": d.get("received") if via_mbd else None,
        "mbd_delivered": d.get("delivered") if via_mbd else None,
        "syncs": d.get("syncs") if via_mbd else None,
        "relay_connections": d.get("relay_connections") if via_mbd else None,
        "spool_failures": d.get("spool_failures"), "deferrals": d.get("deferrals"),
        "mbd_user_s": round(mcpu1[0] - mcpu0[0], 2) if via_mbd else None,
        "mbd_sys_s": round(mcpu1[1] - mcpu0[1], 2) if via_mbd else None,
        "pf_user_s": round(pcpu1[0] - pcpu0[0], 2), "pf_sys_s": round(pcpu1[1] - pcpu0[1], 2),
        "mbd_write_bytes": io1 - io0 if via_mbd else None,
        "disk_write_bytes": (dk1[0] - dk0[0]) * 512, "disk_write_ios": dk1[1] - dk0[1],
        "disk_flushes": dk1[2] - dk0[2],
        "load_before": load0, "load_after": load1,
        "machine_busy_s": round(busy1 - busy0, 2), "ours_cpu_s": round(ours1 - ours0, 2),
        "others_cpu_s": round((busy1 - busy0) - (ours1 - ours0), 2),
        "source_errors": len([l for l in srcout.splitlines() if l.strip()]),
        "time": time.strftime("%H:%M:%S"),
    }
    if via_mbd and r["syncs"]:
        r["syncs_per_s"] = round(r["syncs"] / e2e, 1)
        r["msgs_per_sync"] = round(r["mbd_received"] / r["syncs"], 2)
        r["mbd_cpu_ms_per_msg"] = round((r["mbd_user_s"] + r["mbd_sys_s"]) * 1000 / count, 3)
        r["spool_MBps"] = round(r["mbd_write_bytes"] / e2e / 1e6, 1)
        r["bytes_per_sync"] = r["mbd_write_bytes"] // r["syncs"]
        r["relay_conns_per_msg"] = round(r["relay_connections"] / count, 2)
    if cfg in ("b", "c"):
        r["pf_cpu_ms_per_msg"] = round((r["pf_user_s"] + r["pf_sys_s"]) * 1000 / count, 3)
    r["disk_MBps"] = round(r["disk_write_bytes"] / e2e / 1e6, 1)
    log("%s filter=%s %dB x%d rep%d: received %.0f/s delivered %.0f/s (%d/%d%s) syncs %s "
        "msgs/sync %s mbd %s ms/msg pf %s ms/msg spool %s MB/s disk %s MB/s others %s s load %s -> %s" % (
            cfg, filt, size, count, rep, r["received_mps"], r["delivered_mps"], n, count,
            "" if r["complete"] else " INCOMPLETE", r.get("syncs_per_s"), r.get("msgs_per_sync"),
            r.get("mbd_cpu_ms_per_msg"), r.get("pf_cpu_ms_per_msg"), r.get("spool_MBps"),
            r["disk_MBps"], r["others_cpu_s"], load0, load1))
    with open(os.path.join(OUT, "runs.jsonl"), "a") as f:
        f.write(json.dumps(r) + "\n")
    return r


SMALL_RULES = r"""# 16 rules for the delivery benchmark (header, body, rawbody, uri, meta)
header   MB_SUBJ_FREE     Subject =~ /\bfree\b/i
score    MB_SUBJ_FREE     1.0
header   MB_FROM_NOREPLY  From =~ /no-?reply@/i
score    MB_FROM_NOREPLY  0.5
header   MB_NO_MSGID      Message-Id =~ /^\s*$/
score    MB_NO_MSGID      0.1
header   MB_XMAILER_BULK  X-Mailer =~ /(?:bulk|mass)\s*mail/i
score    MB_XMAILER_BULK  2.0
body     MB_VIAGRA        /\bv[i1]agra\b/i
score    MB_VIAGRA        2.5
body     MB_LOTTERY       /\b(?:lottery|jackpot) winner\b/i
score    MB_LOTTERY       2.5
body     MB_WIRE          /\bwire transfer\b/i
score    MB_WIRE          1.0
body     MB_CLICK         /click (?:here|below) to (?:unsubscribe|claim)/i
score    MB_CLICK         1.5
body     MB_XXX_RUN       /X{70}/
score    MB_XXX_RUN       0.01
rawbody  MB_BASE64_EXE    /TVqQAAMAAAAEAAAA/
score    MB_BASE64_EXE    3.0
uri      MB_URI_IP        /^https?:\/\/\d+\.\d+\.\d+\.\d+/
score    MB_URI_IP        1.5
uri      MB_URI_SHORT     /\b(?:bit\.ly|tinyurl\.com)\//i
score    MB_URI_SHORT     0.5
body     MB_PRIZE         /\byou have (?:won|been selected)\b/i
score    MB_PRIZE         1.0
header   MB_TO_UNDISCL    To =~ /undisclosed/i
score    MB_TO_UNDISCL    0.5
meta     MB_META_SPAMMY   (MB_VIAGRA + MB_LOTTERY + MB_CLICK) >= 2
score    MB_META_SPAMMY   2.0
body     MB_PHARMA        /\b(?:cialis|levitra|xanax)\b/i
score    MB_PHARMA        2.0
required_score 5.0
"""


def fio_section(dev, bytes_per_sync):
    """fio / dd on the spool's filesystem, sequential writes with fdatasync."""
    d = os.path.join(WORK, "fio")
    os.makedirs(d, exist_ok=True)
    secs = os.environ["FIO_SECONDS"]
    out = []
    bs_list = sorted({4096, max(4096, (bytes_per_sync + 4095) // 4096 * 4096)})
    fio = shutil.which("fio")
    for bs in bs_list:
        for direct in (1, 0):
            if not fio:
                break
            cmd = [fio, "--name=spool", "--directory=" + d, "--rw=write", "--bs=%d" % bs,
                   "--size=512M", "--ioengine=psync", "--direct=%d" % direct, "--fdatasync=1",
                   "--runtime=" + secs, "--output-format=json"]
            t0 = time.time()
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=int(secs) + 120)
            try:
                j = json.loads(r.stdout)["jobs"][0]
                w = j["write"]
                lat = j.get("sync", {}).get("lat_ns", {}) or j.get("sync", {})
                res = {"tool": "fio", "bs": bs, "direct": direct,
                       "MBps": round(w["bw_bytes"] / 1e6, 1), "write_iops": round(w["iops"], 1),
                       "fdatasync_p50_us": round(lat.get("percentile", {}).get("50.000000", 0) / 1000, 1),
                       "fdatasync_p99_us": round(lat.get("percentile", {}).get("99.000000", 0) / 1000, 1),
                       "fdatasync_mean_us": round(lat.get("mean", 0) / 1000, 1),
                       "secs": round(time.time() - t0, 1), "cmd": " ".join(cmd)}
            except (ValueError, KeyError, IndexError) as e:
                res = {"tool": "fio", "bs": bs, "direct": direct, "error": str(e),
                       "stderr": r.stderr[-500:], "cmd": " ".join(cmd)}
            log("fio %s" % json.dumps(res))
            out.append(res)
            for fn in os.listdir(d):
                os.unlink(os.path.join(d, fn))
    for bs in bs_list:
        n = max(200, (64 << 20) // bs) if bs > 4096 else 2000
        cmd = ["dd", "if=/dev/zero", "of=" + os.path.join(d, "dd.dat"), "bs=%d" % bs,
               "count=%d" % n, "oflag=dsync", "conv=fdatasync"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        log("dd bs=%d count=%d: %s" % (bs, n, last))
        out.append({"tool": "dd", "bs": bs, "count": n, "result": last, "cmd": " ".join(cmd)})
        try:
            os.unlink(os.path.join(d, "dd.dat"))
        except OSError:
            pass
    with open(os.path.join(OUT, "fio.jsonl"), "a") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    return out


def summarize(rows):
    rows = [r for r in rows if r]
    lines = ["| filter | size | config | received msgs/s (runs) | delivered msgs/s (runs) | "
             "syncs/s | msgs/sync | spool MB/s | disk MB/s | mbd CPU ms/msg | Postfix CPU ms/msg | relay conns/msg | others' CPU s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = []
    for r in rows:
        k = (r["filter"], r["size"], r["config"])
        if k not in keys:
            keys.append(k)

    def med(rs, f):
        v = [x[f] for x in rs if x.get(f) is not None]
        return ("%.1f" % statistics.median(v)) if v else "–"

    def runs(rs, f):
        return " / ".join("%.0f" % x[f] for x in rs)

    for k in keys:
        rs = [r for r in rows if (r["filter"], r["size"], r["config"]) == k]
        lines.append("| %s | %d KB | %s | **%s** (%s) | **%s** (%s) | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            k[0], k[1] // 1024, k[2], med(rs, "received_mps"), runs(rs, "received_mps"),
            med(rs, "delivered_mps"), runs(rs, "delivered_mps"), med(rs, "syncs_per_s"),
            med(rs, "msgs_per_sync"), med(rs, "spool_MBps"), med(rs, "disk_MBps"),
            med(rs, "mbd_cpu_ms_per_msg"), med(rs, "pf_cpu_ms_per_msg"),
            med(rs, "relay_conns_per_msg"), med(rs, "others_cpu_s"),
            ", ".join(sorted({r["load_before"].split()[0] for r in rs}))))
    return "\n".join(lines)


def main():
    os.makedirs(OUT, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for fn in ("runs.jsonl", "fio.jsonl", "summary.md"):   # a re-run starts afresh
        if os.path.exists(os.path.join(OUT, fn)):
            os.rename(os.path.join(OUT, fn), os.path.join(OUT, fn + "." + stamp))
    open(os.path.join(WORK, "small-rules.cf"), "w").write(SMALL_RULES)
    dev = disk_of(WORK)
    log("WORK %s on block device %s; load %s; HEAD %s; mbd built %s" % (
        WORK, dev, loadavg(), subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                             capture_output=True, text=True).stdout.strip(),
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(MBD).st_mtime))))
    sinks = {"a": os.path.join(WORK, "sink-a.out"), "pf": os.path.join(WORK, "sink-pf.out")}
    for s in sinks.values():
        open(s, "w").close()
    SINK_PROCS.append(spawn([SINK, "-u", "postfix", "-c", "127.0.0.1:%d" % A_SINK, "1024"], sinks["a"]))
    SINK_PROCS.append(spawn([SINK, "-u", "postfix", "-c", "127.0.0.1:%d" % PF_SINK, "1024"], sinks["pf"]))
    wait(lambda: listening(A_SINK) and listening(PF_SINK), 10, "smtp-sink")
    if "b" in CONFIGS or "c" in CONFIGS:
        pf_start()
    rows = []
    for filt in FILTERS:
        mbds = (Mbd("a", A_IN, A_SINK, filt), Mbd("b", B_IN, REINJ, filt))
        for m in mbds:
            m.start()
        try:
            cfgs = list(CONFIGS)
            for rep in range(1, REPS + 1):
                for ci, (size, sessions, count) in enumerate(CASES):
                    k = (rep - 1 + ci) % len(cfgs)
                    for cfg in cfgs[k:] + cfgs[:k]:
                        rows.append(one_run(cfg, filt, size, sessions, count, rep, mbds, sinks, dev))
        finally:
            for m in mbds:
                m.stop()
    summary = summarize(rows)
    bps = [r["bytes_per_sync"] for r in rows if r.get("bytes_per_sync") and r["size"] >= 51200
           and r["config"] == "a"]
    fio = fio_section(dev, int(statistics.median(bps)) if bps else 65536) \
        if os.environ["FIO"] == "1" else []
    with open(os.path.join(OUT, "summary.md"), "w") as f:
        f.write(summary + "\n\n")
        for r in fio:
            f.write("    %s\n" % json.dumps(r))
    print(summary)


try:
    main()
finally:
    cleanup()
PY

exec timeout --signal=TERM --kill-after=60 "$LIMIT" /usr/bin/python3 "$DRIVER"
