#!/usr/bin/env python3
"""Scan a corpus with a running spamd (SPAMC/1.5 SYMBOLS over a unix socket or loopback TCP).

One JSON line per message, appended to --out:
  {"file": "ham/spamassassin/easy_ham/0001...", "score": 1.2, "required": 5.0,
   "is_spam": false, "symbols": ["RULE_A", ...], "ms": 812.4, "bytes": 3412}
Files already in --out are skipped (resume). Failures (timeout, protocol error) go to
OUT.errors.jsonl and are retried by the next run. Per-run throughput (wall msgs/s, spamd CPU
ms per message from /proc, load/uptime) is appended to OUT.runs.jsonl.

Multi-message files (mbox) are skipped and listed in OUT.skipped.txt; maildir files are single
messages and are scanned. Python 3 stdlib only; bounded concurrency and timeouts.
"""
import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time

SKIP_NAMES = {"SOURCE.md", "README.md", "LICENSE", "LICENSE.md"}
MAX_BYTES = 50 * 1024 * 1024
CLK = os.sysconf("SC_CLK_TCK")


def is_mbox(rel):
    """multi-message container files that the reference skips"""
    low = rel.lower()
    if low.endswith(".mbox") or ".mbox." in low or "/mbox/" in low:
        return True
    return False


def list_messages(corpus, folders):
    out, skipped = [], []
    for folder in folders:
        base = os.path.join(corpus, folder)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, corpus)
                if fn in SKIP_NAMES or fn.endswith(".md"):
                    continue
                if is_mbox(rel):
                    skipped.append((rel, "mbox (multi-message file)"))
                    continue
                out.append(rel)
    return out, skipped


def spamd_symbols(sock_path, tcp, data, timeout):
    """one SYMBOLS request; returns (is_spam, score, required, symbols)"""
    if sock_path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = sock_path
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        host, port = tcp.rsplit(":", 1)
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("loopback only")
        addr = (host, int(port))
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        s.connect(addr)
        s.sendall(b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(data) + data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("spamd reply not complete after %ss" % timeout)
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    finally:
        s.close()
    return parse_symbols_reply(b"".join(chunks))


def parse_symbols_reply(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].decode("latin-1")
    parts = status.split(None, 2)
    if len(parts) < 3 or not parts[0].startswith("SPAMD/") or parts[1] != "0":
        raise RuntimeError("spamd status: %r" % buf[:300])
    spam = None
    for ln in lines[1:]:
        k, _, v = ln.decode("latin-1").partition(":")
        if k.strip().lower() == "spam":
            # "True ; 15.3 / 5.0"
            flag, _, rest = v.partition(";")
            sc, _, req = rest.partition("/")
            spam = (flag.strip().lower() in ("true", "yes"), float(sc), float(req))
    if spam is None:
        raise RuntimeError("no Spam: header in %r" % buf[:300])
    syms = [x.strip() for x in body.decode("latin-1").replace("\r", "").replace("\n", ",").split(",") if x.strip()]
    return spam[0], spam[1], spam[2], syms


def proc_tree_cpu(pid):
    """CPU seconds of pid and its live descendants, plus reaped children (cutime/cstime of pid)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        r = s[s.rindex(")") + 2:].split()
        table[int(d)] = (int(r[1]), int(r[11]) + int(r[12]), int(r[13]) + int(r[14]))
    if pid not in table:
        return None
    kids = {}
    for p, v in table.items():
        kids.setdefault(v[0], []).append(p)
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        if p in table:
            total += table[p][1]
            stack.extend(kids.get(p, []))
    total += table[pid][2]
    return total / CLK


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="folders relative to --corpus")
    ap.add_argument("--corpus", default="/work/shared/corpus")
    ap.add_argument("--socket", help="spamd unix socket")
    ap.add_argument("--tcp", help="127.0.0.1:PORT instead of --socket")
    ap.add_argument("--spamd-pid", type=int, help="spamd parent pid, for CPU accounting")
    ap.add_argument("--out", default="/tmp/spamd-reference.jsonl")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--limit", type=int, default=0, help="stop after N new messages (0 = all)")
    ap.add_argument("--progress", type=int, default=100)
    a = ap.parse_args()
    if not (a.socket or a.tcp):
        ap.error("--socket or --tcp")
    a.concurrency = max(1, min(a.concurrency, 4))

    files, skipped = list_messages(a.corpus, a.folders)
    done = set()
    if os.path.exists(a.out):
        with open(a.out) as f:
            for ln in f:
                try:
                    done.add(json.loads(ln)["file"])
                except (ValueError, KeyError):
                    pass
    with open(a.out + ".skipped.txt", "w") as f:
        for rel, why in skipped:
            f.write("%s\t%s\n" % (rel, why))
    todo = [x for x in files if x not in done]
    if a.limit:
        todo = todo[:a.limit]
    print("spamd-reference: %d messages, %d already done, %d to scan, %d skipped (mbox)"
          % (len(files), len(done & set(files)), len(todo), len(skipped)), file=sys.stderr)

    q = queue.Queue()
    for x in todo:
        q.put(x)
    lock = threading.Lock()
    out = open(a.out, "a")
    errf = open(a.out + ".errors.jsonl", "a")
    stats = {"ok": 0, "err": 0, "spam": 0, "bytes": 0, "ms": []}
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            try:
                rel = q.get_nowait()
            except queue.Empty:
                return
            with open(os.path.join(a.corpus, rel), "rb") as f:
                data = f.read(MAX_BYTES + 1)
            t0 = time.monotonic()
            try:
                if len(data) > MAX_BYTES:
                    raise RuntimeError("larger than %d bytes" % MAX_BYTES)
                is_spam, score, req, syms = spamd_symbols(a.socket, a.tcp, data, a.timeout)
                ms = (time.monotonic() - t0) * 1000
                rec = {"file": rel, "score": score, "required": req, "is_spam": is_spam,
                       "symbols": syms, "ms": round(ms, 1), "bytes": len(data)}
                with lock:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                    stats["ok"] += 1
                    stats["spam"] += is_spam
                    stats["bytes"] += len(data)
                    stats["ms"].append(ms)
                    n = stats["ok"] + stats["err"]
                    if a.progress and n % a.progress == 0:
                        el = time.monotonic() - T0
                        print("  %d/%d  %.2f msgs/s  err %d" % (n, len(todo), n / el, stats["err"]), file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - every failure is recorded, then the run goes on
                ms = (time.monotonic() - t0) * 1000
                with lock:
                    errf.write(json.dumps({"file": rel, "error": "%s: %s" % (type(e).__name__, e),
                                           "ms": round(ms, 1), "bytes": len(data),
                                           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
                    errf.flush()
                    stats["err"] += 1

    up0 = open("/proc/uptime").read().split()[0]
    load0 = open("/proc/loadavg").read().split()[:3]
    cpu0 = proc_tree_cpu(a.spamd_pid) if a.spamd_pid else None
    T0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(1)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join(a.timeout + 5)
    wall = time.monotonic() - T0
    cpu1 = proc_tree_cpu(a.spamd_pid) if a.spamd_pid else None
    out.close()
    errf.close()
    ms = sorted(stats["ms"])
    n = stats["ok"]
    run = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "scanned": n, "errors": stats["err"],
           "spam": stats["spam"], "bytes": stats["bytes"], "wall_s": round(wall, 1),
           "msgs_per_s": round(n / wall, 2) if wall else None,
           "spamd_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
           "concurrency": a.concurrency,
           "loadavg_start": load0, "loadavg_end": open("/proc/loadavg").read().split()[:3],
           "uptime_start_s": float(up0),
           "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    if run["spamd_cpu_s"] is not None and n:
        run["spamd_cpu_ms_per_msg"] = round(run["spamd_cpu_s"] * 1000 / n, 1)
        run["spamd_cores"] = round(run["spamd_cpu_s"] / wall, 2)
    if ms:
        run["latency_ms_p50"] = round(ms[len(ms) // 2], 1)
        run["latency_ms_p99"] = round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1)
        run["latency_ms_max"] = round(ms[-1], 1)
    with open(a.out + ".runs.jsonl", "a") as f:
        f.write(json.dumps(run) + "\n")
    print(json.dumps(run), file=sys.stderr)
    return 0 if not stop.is_set() else 130


if __name__ == "__main__":
    sys.exit(main())
