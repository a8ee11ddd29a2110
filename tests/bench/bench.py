#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""revsock benchmark driver (see tests/bench/README.md).

Runs every configuration (direct, v2ray, revsock-userspace, revsock-sockmap)
interleaved, round after round, with the workloads of build/tools/loadgen, and
writes build/bench/results.md (+ raw.json, bench.png).  Python 3 stdlib only.

Exit status: 0 when every available configuration passed every data check,
1 otherwise, 2 on a harness error (no loadgen, no services).
"""
import argparse
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, "build")
LOADGEN = os.environ.get("BENCH_LOADGEN") or os.path.join(BUILD, "tools", "loadgen")
REVSOCK = os.path.join(BUILD, "revsock")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

CONFIGS = ["direct", "v2ray", "revsock-userspace", "revsock-sockmap"]
PROXIES = ["v2ray", "revsock-userspace", "revsock-sockmap"]

# Workload sizes.  "budget" bounds the whole run: no new round starts after it.
PROFILES = {
    "full": dict(rounds=3, bulk_s=5.0, pp_count=10000, pp_warm=200, pp_max=4.0, churn_s=3.0,
                 churn_conns=4, ttfb_count=200, ttfb_max=3.0, idle_n=10000, idle_open=60.0,
                 idle_settle=5.0, budget=600.0),
    "quick": dict(rounds=3, bulk_s=0.4, pp_count=1000, pp_warm=50, pp_max=1.0, churn_s=0.5,
                  churn_conns=4, ttfb_count=10, ttfb_max=1.2, idle_n=500, idle_open=15.0,
                  idle_settle=0.3, budget=75.0),
}

# key, label, unit, better (hi/lo), format
METRICS = [
    ("bulk_up_1", "bulk upload, 1 stream", "MB/s", "hi", "%.0f"),
    ("bulk_up_8", "bulk upload, 8 streams", "MB/s", "hi", "%.0f"),
    ("bulk_down_1", "bulk download, 1 stream", "MB/s", "hi", "%.0f"),
    ("bulk_down_8", "bulk download, 8 streams", "MB/s", "hi", "%.0f"),
    ("pp64_p50", "ping-pong 64 B, p50", "µs", "lo", "%.1f"),
    ("pp64_p99", "ping-pong 64 B, p99", "µs", "lo", "%.1f"),
    ("pp64_p999", "ping-pong 64 B, p99.9", "µs", "lo", "%.1f"),
    ("pp1k_p50", "ping-pong 1 KiB, p50", "µs", "lo", "%.1f"),
    ("pp1k_p99", "ping-pong 1 KiB, p99", "µs", "lo", "%.1f"),
    ("pp1k_p999", "ping-pong 1 KiB, p99.9", "µs", "lo", "%.1f"),
    ("churn_sps", "churn: connect, 16 B echo, close", "sessions/s", "hi", "%.0f"),
    ("ttfb_p50", "first byte, server speaks first, p50", "ms", "lo", "%.3f"),
    ("ttfb_p99", "first byte, server speaks first, p99", "ms", "lo", "%.3f"),
    ("idle_kib", "memory per idle session", "KiB", "lo", "%.2f"),
    ("cpu_gb", "CPU per GB, whole machine (bulk runs)", "CPU-s/GB", "lo", "%.2f"),
    ("cpu_proxy_gb", "CPU per GB, proxy processes only", "CPU-s/GB", "lo", "%.2f"),
]
METRIC = {m[0]: m for m in METRICS}
BULK = [("up", 1), ("up", 8), ("down", 1), ("down", 8)]


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- system
def machine_cpu_s():
    """Busy CPU-seconds of the whole machine so far (all CPUs, all processes and
    kernel threads): user+nice+system+irq+softirq from /proc/stat (guest time is
    inside user; steal and idle/iowait are not ours)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def proc_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return 0.0


def proc_rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def sock_mem_once():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                p = line.split()
                return int(p[p.index("mem") + 1]) * PAGE
    return 0


def sock_mem(samples=5, gap=0.05):
    """Kernel TCP socket buffer memory in bytes (/proc/net/sockstat 'mem' pages),
    median of a few samples: the figure is host-wide and other traffic moves it."""
    v = []
    for i in range(samples):
        if i:
            time.sleep(gap)
        v.append(sock_mem_once())
    return statistics.median(v)


def established_on_port(port):
    """Established TCP connections whose local port is `port` (tunnels at the portal)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "01" and int(p[1].split(":")[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


try:
    import ctypes
    _libc = ctypes.CDLL(None, use_errno=True)
except (ImportError, OSError):
    _libc = None


def child_setup():
    """preexec_fn of every process we start: enough fds for 10,000 sessions, and
    SIGTERM when the driver dies so nothing we started outlives it."""
    raise_nofile()
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def raise_nofile():
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200000, 200000))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def probe_echo(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            msg = b"revsock-bench-probe\n"
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                b = s.recv(len(msg) - len(got))
                if not b:
                    return False
                got += b
            return got == msg
    except OSError:
        return False


# --------------------------------------------------------------------------- processes
class Proc:
    """A process we started; stopped by its own pid only."""

    def __init__(self, name, argv, logpath, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
        self.name, self.logpath = name, logpath
        self.logf = open(logpath, "wb")
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=self.logf,
                                  preexec_fn=child_setup, cwd=os.path.dirname(logpath))

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, grace=3.0):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.logf.close()
        return self.p.returncode

    def log_tail(self, n=3):
        try:
            with open(self.logpath, "rb") as f:
                lines = [l.strip() for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
            # revsock's "<unix-time> <role> <level>: " prefix says nothing here
            lines = [re.sub(r"^\d+(\.\d+)? \S+ \S+: ", "", l) for l in lines[-n:]]
            return " | ".join(lines)
        except OSError:
            return ""


def v2ray_configs(tunnel, pub, svc):
    """The reference configs (shared/reference/v2ray) with our ports: public
    inbounds echo/bulk/banner -> the loadgen services."""
    portal = {
        "log": {"loglevel": "warning", "access": "none"},
        "reverse": {"portals": [{"tag": "portal", "domain": "tunnel.v2ref.local"}]},
        "inbounds": [{"tag": "tunnel", "listen": "127.0.0.1", "port": tunnel, "protocol": "dokodemo-door",
                      "settings": {"address": "tunnel.v2ref.local", "port": 1, "network": "tcp"}}] + [
            {"tag": "public-" + k, "listen": "127.0.0.1", "port": pub[k], "protocol": "dokodemo-door",
             "settings": {"address": "127.0.0.1", "port": svc[k], "network": "tcp"}} for k in ("echo", "bulk", "banner")],
        "outbounds": [{"tag": "block", "protocol": "blackhole", "settings": {}}],
        "routing": {"domainStrategy": "AsIs", "rules": [
            {"type": "field", "inboundTag": ["tunnel"], "domain": ["full:tunnel.v2ref.local"], "outboundTag": "portal"},
            {"type": "field", "inboundTag": ["public-echo", "public-bulk", "public-banner"], "outboundTag": "portal"}]},
    }
    bridge = {
        "log": {"loglevel": "warning", "access": "none"},
        "reverse": {"bridges": [{"tag": "bridge", "domain": "tunnel.v2ref.local"}]},
        "outbounds": [{"tag": "direct", "protocol": "freedom", "settings": {}},
                      {"tag": "interconn", "protocol": "freedom", "settings": {"redirect": "127.0.0.1:%d" % tunnel}}],
        "routing": {"domainStrategy": "AsIs", "rules": [
            {"type": "field", "inboundTag": ["bridge"], "domain": ["full:tunnel.v2ref.local"], "outboundTag": "interconn"},
            {"type": "field", "inboundTag": ["bridge"], "outboundTag": "direct"}]},
    }
    return portal, bridge


class NotAvailable(Exception):
    pass


class StartFailed(Exception):
    pass


class Setup:
    """One configuration started: ports to use, processes to watch."""

    def __init__(self, cfg, svc, rundir):
        self.cfg, self.svc, self.rundir = cfg, svc, rundir
        self.procs = []
        self.ports = dict(svc)
        self.tunnel = None

    def start(self, v2ray_bin=None):
        v2ray_bin = v2ray_bin or getattr(self, "v2ray_bin", None)
        self.v2ray_bin = v2ray_bin
        if self.cfg == "direct":
            return
        if self.cfg == "v2ray":
            if not v2ray_bin:
                raise NotAvailable("v2ray not installed")
            cmd = lambda f: [v2ray_bin, "-config", f]
        else:
            if not os.access(REVSOCK, os.X_OK):
                raise NotAvailable("build/revsock not built")
            dp = self.cfg.split("-", 1)[1]
            # sockmap on a kernel that cannot run it: revsock exits with the probe's
            # reason and the row says "not available" with it
            cmd = lambda f: [REVSOCK, "run", "-c", f, "--datapath", dp, "--log", "warning"]
        last = ""
        for attempt in range(3):  # a port we picked may be taken by someone else meanwhile
            tunnel, pe, pb, pn = free_ports(4)
            pub = {"echo": pe, "bulk": pb, "banner": pn}
            portal, bridge = v2ray_configs(tunnel, pub, self.svc)
            os.makedirs(self.rundir, exist_ok=True)
            files = {}
            for name, conf in (("portal", portal), ("bridge", bridge)):
                files[name] = os.path.join(self.rundir, name + ".json")
                with open(files[name], "w") as f:
                    json.dump(conf, f, indent=1)
            self.procs = [Proc(name, cmd(files[name]), os.path.join(self.rundir, name + ".log"))
                          for name in ("portal", "bridge")]
            self.ports, self.tunnel = pub, tunnel
            ok, why, exited = self.wait_ready(10.0)
            if ok:
                return
            self.stop()
            last = why
            if "in use" not in why:
                break
        # the engine that may not exist yet says so by exiting with its reason;
        # one that runs but does not carry the probe is a failure, not "not available"
        if self.cfg == "revsock-sockmap" and exited:
            raise NotAvailable(last or "did not start")
        raise StartFailed(last)

    def wait_ready(self, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for p in self.procs:
                if not p.alive():
                    time.sleep(0.1)
                    return False, "%s exited %s: %s" % (p.name, p.p.returncode, p.log_tail() or "(no output)"), True
            if probe_echo(self.ports["echo"], 1.0):
                return True, "", False
            time.sleep(0.05)
        tails = "; ".join("%s: %s" % (p.name, p.log_tail()) for p in self.procs if p.log_tail())
        return False, "no echo through the tunnel within %.0f s%s" % (timeout, (" (" + tails + ")") if tails else ""), False

    def pids(self):
        return [p.pid for p in self.procs]

    def check_alive(self):
        for p in self.procs:
            if not p.alive():
                return "%s exited %s: %s" % (p.name, p.p.returncode, p.log_tail() or "(no output)")
        return None

    def stop(self):
        for p in self.procs:
            p.stop()
        self.procs = []


# --------------------------------------------------------------------------- workloads
def run_loadgen(args, timeout):
    try:
        r = subprocess.run([LOADGEN] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, preexec_fn=child_setup)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "loadgen %s timed out after %.0f s" % (args[0], timeout)}
    lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
    try:
        res = json.loads(lines[-1])
    except (IndexError, ValueError):
        res = {"ok": False, "error": "loadgen %s: no result (rc %d) %s" % (args[0], r.returncode,
                                                                          r.stderr.decode()[-200:].strip())}
    if r.returncode != 0 and res.get("ok"):
        res["ok"], res["error"] = False, "loadgen rc %d" % r.returncode
    return res


def read_line(p, timeout):
    end = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < end:
        r, _, _ = select.select([p.stdout], [], [], max(0.0, end - time.monotonic()))
        if not r:
            break
        b = os.read(p.stdout.fileno(), 4096)
        if not b:
            break
        buf += b
        if b"\n" in buf:
            break
    try:
        return json.loads(buf.split(b"\n")[0])
    except ValueError:
        return None


def run_idle(setup, P):
    """Hold P['idle_n'] sessions open through the configuration; memory per session =
    (proxies' RSS growth + kernel TCP buffer memory growth) / sessions."""
    pids = setup.pids()
    rss0 = sum(proc_rss(p) for p in pids)
    sk0 = sock_mem()
    n = P["idle_n"]
    argv = [LOADGEN, "idle", "--port", str(setup.ports["echo"]), "--sessions", str(n),
            "--open-seconds", str(P["idle_open"]), "--hold-max", "120"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         preexec_fn=child_setup)
    res = {"ok": False}
    try:
        first = read_line(p, P["idle_open"] + 10)
        if not first:
            res["error"] = "idle: no open report"
            return res
        time.sleep(P["idle_settle"])
        rss1 = sum(proc_rss(pp) for pp in pids)
        sk1 = sock_mem()
        tunnels = established_on_port(setup.tunnel) if setup.tunnel else 0
        p.stdin.write(b"check\n")
        p.stdin.flush()
        second = read_line(p, P["idle_open"] + 10)
        if not second:
            res["error"] = "idle: no check report"
            return res
        opened = max(1, first.get("opened", 0))
        res = dict(second)
        res.update(open_seconds=first.get("seconds"), rss_delta=rss1 - rss0, sock_delta=sk1 - sk0,
                   tunnels=tunnels, kib_per_session=(rss1 - rss0 + sk1 - sk0) / opened / 1024.0)
        if not second.get("ok"):
            # A proxy that opens fewer sessions than asked, all of them intact, has hit
            # its own limit: the notes show opened/alive; lost or altered bytes fail.
            intact = (second.get("opened", 0) > 0 and not second.get("dropped") and not second.get("corrupt")
                      and second.get("alive") == second.get("opened"))
            if intact:
                res["ok"] = True
            else:
                res["error"] = "idle: opened %s/%d, alive %s, dropped %s, corrupt %s" % (
                    second.get("opened"), n, second.get("alive"), second.get("dropped"), second.get("corrupt"))
        return res
    finally:
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(P["idle_open"] + 10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def measure(setup, P, fail_):
    """All workloads against one started configuration; returns {metric: value}.
    A proxy that died ends the round for its configuration (no point in waiting
    out every remaining workload's timeout)."""
    m, info = {}, {}

    class Dead(Exception):
        pass

    def fail(what, err):
        fail_(what, err)
        dead = setup.check_alive()
        if dead:
            raise Dead(dead)

    try:
        measure_all(setup, P, fail, m, info)
    except Dead:
        info["skipped"] = True  # the caller reports the dead process
    return m, info


def measure_all(setup, P, fail, m, info):
    pids = setup.pids()
    tot_bytes = tot_cpu = tot_pcpu = 0.0
    for d, n in BULK:
        key = "bulk_%s_%d" % (d, n)
        c0, p0 = machine_cpu_s(), sum(proc_cpu_s(p) for p in pids)
        r = run_loadgen(["bulk", "--port", setup.ports["bulk"], "--dir", d, "--streams", n,
                         "--seconds", P["bulk_s"]], P["bulk_s"] + 40)
        c1, p1 = machine_cpu_s(), sum(proc_cpu_s(p) for p in pids)
        if not r.get("ok"):
            fail(key, r.get("error"))
            continue
        m[key] = r["bytes_per_s"] / 1e6
        tot_bytes += r["bytes"]
        tot_cpu += c1 - c0
        tot_pcpu += p1 - p0
    if tot_bytes > 0:
        m["cpu_gb"] = tot_cpu / (tot_bytes / 1e9)
        if pids:
            m["cpu_proxy_gb"] = tot_pcpu / (tot_bytes / 1e9)
    for size, pfx in ((64, "pp64"), (1024, "pp1k")):
        r = run_loadgen(["pingpong", "--port", setup.ports["echo"], "--size", size, "--count", P["pp_count"],
                         "--warmup", P["pp_warm"], "--max-seconds", P["pp_max"]], P["pp_max"] + 60)
        if not r.get("ok"):
            fail(pfx, r.get("error"))
            continue
        m[pfx + "_p50"], m[pfx + "_p99"], m[pfx + "_p999"] = r["p50_us"], r["p99_us"], r["p999_us"]
    r = run_loadgen(["churn", "--port", setup.ports["echo"], "--conns", P["churn_conns"],
                     "--seconds", P["churn_s"]], P["churn_s"] + 60)
    if r.get("ok"):
        m["churn_sps"] = r["sessions_per_s"]
        info["churn_failed"] = r.get("failed", 0)
    else:
        fail("churn", r.get("error"))
    r = run_loadgen(["ttfb", "--port", setup.ports["banner"], "--count", P["ttfb_count"],
                     "--max-seconds", P["ttfb_max"]], P["ttfb_max"] + 60)
    if r.get("ok"):
        m["ttfb_p50"], m["ttfb_p99"] = r["p50_us"] / 1000.0, r["p99_us"] / 1000.0
        info["ttfb_n"], info["ttfb_failed"] = r.get("n"), r.get("failed", 0)
    else:
        fail("ttfb", r.get("error"))
    # fresh proxies for the idle workload: memory the bulk runs left in the
    # allocators would otherwise absorb the sessions and hide their cost
    r = {"ok": False}
    if setup.procs:
        setup.stop()
        try:
            setup.start()
        except (NotAvailable, StartFailed) as e:
            r["error"] = "idle: restart failed: %s" % e
    if "error" not in r:
        r = run_idle(setup, P)
    if r.get("ok"):
        m["idle_kib"] = r["kib_per_session"]
    else:
        fail("idle", r.get("error"))
    info["idle"] = {k: r.get(k) for k in ("opened", "alive", "dropped", "tunnels", "rss_delta", "sock_delta",
                                         "open_seconds")}


# --------------------------------------------------------------------------- report
def fmt(key, v):
    return METRIC[key][4] % v


def summarize(results):
    """{cfg: {metric: (median, min, max, n)}}"""
    out = {}
    for cfg, per in results.items():
        out[cfg] = {}
        for key, vals in per.items():
            if vals:
                out[cfg][key] = (statistics.median(vals), min(vals), max(vals), len(vals))
    return out


def ratio(s, cfg, ref, key):
    a, b = s.get(cfg, {}).get(key), s.get(ref, {}).get(key)
    if not a or not b or b[0] <= 0 or cfg == ref:
        return "—" if cfg != ref else "1"
    if key in ("idle_kib", "cpu_proxy_gb") and ref == "direct":
        return "—"  # direct has no proxy: the reference is ~0
    return fmt_ratio(a[0] / b[0])


def fmt_ratio(x):
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    if x >= 0.01:
        return "%.2f" % x
    return "%.2g" % x


def render(state, P, quick):
    s = summarize(state["results"])
    avail = state["available"]
    L = []
    L.append("# revsock benchmark%s" % (" (BENCH_QUICK smoke run: sizes too small to judge speed)" if quick else ""))
    L.append("")
    L.append("Host %s, %d CPUs, kernel %s; %s UTC; %d round(s) of %s, interleaved; run time %.0f s; "
             "load average (1 min) %s at the start, %s at the end." % (
                 os.uname().nodename, os.cpu_count(), os.uname().release,
                 time.strftime("%Y-%m-%d %H:%M", time.gmtime(state["started"])), state["rounds_done"],
                 ", ".join(c for c in CONFIGS if avail.get(c) is True), state["elapsed"],
                 state.get("load0", "?"), state.get("load1", "?")))
    L.append("")
    L.append("Configurations:")
    for c in CONFIGS:
        a = avail.get(c)
        if a is True:
            nf = sum(1 for f in state["failures"] if f.startswith(c + " "))
            st = "measured" + (", with %d failure(s) (see Notes)" % nf if nf else "")
            if not any(state["results"].get(c, {}).values()):
                st = "FAILED: nothing measured (see Notes)"
        else:
            st = "not available: %s" % a if a else "not run"
        L.append("- **%s**: %s" % (c, st))
    L.append("")
    L.append("Cells: median of the rounds, [min–max], (n rounds). ×direct / ×v2ray = this median ÷ that "
             "configuration's median (throughput: higher is better; latency, memory, CPU: lower is better).")
    L.append("")
    L.append("| metric | unit | configuration | median | min–max | n | ×direct | ×v2ray |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|")
    for key, label, unit, better, _ in METRICS:
        first = True
        for c in CONFIGS:
            a = avail.get(c)
            name = label if first else ""
            u = unit if first else ""
            first = False
            if a is not True:
                why = ("not available: %s" % a) if a else "not run"
                L.append("| %s | %s | %s | %s | | | | |" % (name, u, c, why.replace("|", "/")[:150]))
                continue
            v = s.get(c, {}).get(key)
            if not v:
                na = "—" if (key == "cpu_proxy_gb" and c == "direct") else "failed"
                L.append("| %s | %s | %s | %s | | | | |" % (name, u, c, na))
                continue
            L.append("| %s | %s | %s | %s | %s–%s | %d | %s | %s |" % (
                name, u, c, fmt(key, v[0]), fmt(key, v[1]), fmt(key, v[2]), v[3],
                ratio(s, c, "direct", key), ratio(s, c, "v2ray", key)))
    L.append("")
    L.append("## Which engine wins (best proxy per metric; direct is the no-proxy baseline)")
    L.append("")
    for key, label, unit, better, _ in METRICS:
        cands = [(s[c][key][0], c) for c in PROXIES if avail.get(c) is True and key in s.get(c, {})]
        if not cands:
            L.append("- %s: no proxy measured" % label)
            continue
        best = max(cands) if better == "hi" else min(cands)
        extra = ""
        if "direct" in s and key in s["direct"] and key != "cpu_proxy_gb" and key != "idle_kib":
            extra = "; direct %s" % fmt(key, s["direct"][key][0])
        others = ", ".join("%s %s" % (c, fmt(key, v)) for v, c in sorted(cands, key=lambda t: t[1]) if c != best[1])
        L.append("- %s: **%s** (%s %s%s%s)" % (label, best[1], fmt(key, best[0]), unit,
                                                ("; " + others) if others else "", extra))
    L.append("")
    L.append("## Goals (reported, not asserted)")
    L.append("")
    goals = goal_lines(s, avail)
    L.extend(goals if goals else ["- no revsock engine measured"])
    L.append("")
    L.append("## Notes")
    L.append("")
    for c in CONFIGS:
        idle = [i.get("idle", {}) for i in state["info"].get(c, [])]
        if idle:
            t = [str(i.get("tunnels")) for i in idle]
            L.append("- %s idle: sessions opened %s, still alive at check %s%s" % (
                c, "/".join(str(i.get("opened")) for i in idle), "/".join(str(i.get("alive")) for i in idle),
                ("; tunnels at the portal %s (V2Ray's bridge adds one per 2 s while sessions/tunnels > 16; measured "
                 "after a %.1f s settle, not waited out)" % ("/".join(t), P["idle_settle"])) if c == "v2ray" else
                ("; tunnels %s" % "/".join(t) if c != "direct" else "")))
        cf = [i.get("churn_failed") for i in state["info"].get(c, []) if i.get("churn_failed")]
        if cf:
            L.append("- %s churn: sessions that failed (no echo, not corrupt): %s" % (c, "/".join(map(str, cf))))
    for n in state["notes"]:
        L.append("- " + n)
    if state["failures"]:
        L.append("- **failures**:")
        for f in state["failures"]:
            L.append("  - %s" % f)
    else:
        L.append("- every measured configuration moved correct bytes in every workload")
    L.append("- machine CPU and kernel socket memory are whole-host figures: other load on the host shows up in them")
    L.append("")
    L.append("![throughput and latency](bench.png)")
    L.append("")
    return "\n".join(L)


def goal_lines(s, avail):
    out = []

    def med(c, k):
        v = s.get(c, {}).get(k)
        return v[0] if v else None

    def verdict(ok):
        return "met" if ok else "NOT met"

    for c in ("revsock-userspace", "revsock-sockmap"):
        if avail.get(c) is not True:
            continue
        for d, n in BULK:
            k = "bulk_%s_%d" % (d, n)
            v, dv, vv = med(c, k), med("direct", k), med("v2ray", k)
            if None in (v, dv, vv):
                continue
            out.append("- %s %s: %.2f× direct (goal ≥ 0.40), %.2f× v2ray (goal ≥ 2): %s" % (
                c, METRIC[k][1], v / dv, v / vv, verdict(v / dv >= 0.4 and v / vv >= 2)))
        v, vv = med(c, "cpu_gb"), med("v2ray", "cpu_gb")
        if v is not None and vv:
            out.append("- %s CPU-s/GB (whole machine): %.2f× v2ray (goal ≤ 0.6): %s" % (c, v / vv, verdict(v / vv <= 0.6)))
        for k in ("pp64_p50", "pp64_p99", "pp64_p999", "pp1k_p50", "pp1k_p99", "pp1k_p999"):
            v, dv, vv = med(c, k), med("direct", k), med("v2ray", k)
            if None in (v, dv, vv):
                continue
            add, vadd = v - dv, vv - dv
            if vadd <= 0:
                out.append("- %s %s: added %.1f µs; v2ray added %.1f µs (no margin to compare)" % (c, METRIC[k][1], add, vadd))
                continue
            out.append("- %s %s: added %.1f µs over direct vs v2ray's %.1f µs = %.2f (goal ≤ 0.33): %s" % (
                c, METRIC[k][1], add, vadd, add / vadd, verdict(add <= vadd / 3)))
        v = med(c, "ttfb_p50")
        if v is not None:
            out.append("- %s first byte of a server-speaks-first service p50: %.3f ms (goal < 1 ms; v2ray %s): %s" % (
                c, v, ("%.1f ms" % med("v2ray", "ttfb_p50")) if med("v2ray", "ttfb_p50") is not None else "n/a",
                verdict(v < 1)))
        v = med(c, "idle_kib")
        if v is not None:
            out.append("- %s memory per idle session: %.2f KiB (goal < 16): %s" % (c, v, verdict(v < 16)))
    return out


def plot(state, outdir):
    s = summarize(state["results"])
    cfgs = [c for c in CONFIGS if state["available"].get(c) is True and s.get(c)]
    if not cfgs or not shutil.which("gnuplot"):
        return False
    tp = os.path.join(outdir, "throughput.dat")
    lat = os.path.join(outdir, "latency.dat")
    with open(tp, "w") as f:
        f.write("# workload " + " ".join("%s_med %s_min %s_max" % (c, c, c) for c in cfgs) + "\n")
        for d, n in BULK:
            k = "bulk_%s_%d" % (d, n)
            row = ['"%s %d"' % (d, n)]
            for c in cfgs:
                v = s[c].get(k, (0, 0, 0, 0))
                row += ["%.1f" % x for x in v[:3]]
            f.write(" ".join(row) + "\n")
    with open(lat, "w") as f:
        f.write("# percentile " + " ".join("%s_med %s_min %s_max" % (c, c, c) for c in cfgs) + "\n")
        for k, lab in (("pp64_p50", "64B p50"), ("pp64_p99", "64B p99"), ("pp64_p999", "64B p99.9"),
                       ("pp1k_p50", "1K p50"), ("pp1k_p99", "1K p99"), ("pp1k_p999", "1K p99.9")):
            row = ['"%s"' % lab]
            for c in cfgs:
                v = s[c].get(k, (1, 1, 1, 0))
                row += ["%.2f" % x for x in v[:3]]
            f.write(" ".join(row) + "\n")
    png = os.path.join(outdir, "bench.png")
    gp = os.path.join(outdir, "bench.gp")

    def plots(datafile):
        parts = []
        for i, c in enumerate(cfgs):
            col = 2 + 3 * i
            src = "'%s'" % datafile if i == 0 else "''"
            parts.append("%s using %d:%d:%d%s title '%s'" % (src, col, col + 1, col + 2,
                                                            ":xtic(1)" if i == 0 else "", c))
        return ", ".join(parts)

    with open(gp, "w") as f:
        f.write("""set terminal pngcairo size 1400,560 font ',10'
set output '%s'
set multiplot layout 1,2 title 'revsock benchmark: median of %d round(s), bars = min-max'
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.7 border -1
set key top right
set grid ytics
set title 'bulk throughput (MB/s, higher is better)'
set yrange [0:*]
plot %s
set title 'ping-pong round trip (µs, log scale, lower is better)'
set logscale y
set yrange [*:*]
plot %s
unset multiplot
""" % (png, state["rounds_done"], plots(tp), plots(lat)))
    r = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        log("gnuplot failed: " + r.stderr.decode()[-300:])
        return False
    return True


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    ap.add_argument("--out", default=os.path.join(BUILD, "bench"))
    ap.add_argument("--revsock", default=REVSOCK, help="revsock binary (default build/revsock)")
    a = ap.parse_args()
    globals()["REVSOCK"] = os.path.abspath(a.revsock)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop what we started
    P = dict(PROFILES["quick" if a.quick else "full"])
    if a.rounds:
        P["rounds"] = max(1, min(a.rounds, 20))
    configs = [c for c in a.configs.split(",") if c in CONFIGS]
    if not os.access(LOADGEN, os.X_OK):
        log("no %s: run make" % LOADGEN)
        return 2
    if os.geteuid() != 0:
        log("warning: not root; RLIMIT_NOFILE may stop the idle-session workload short")
    raise_nofile()
    os.makedirs(a.out, exist_ok=True)
    v2ray_bin = shutil.which("v2ray") or ("/usr/bin/v2ray" if os.access("/usr/bin/v2ray", os.X_OK) else None)
    t_start = time.monotonic()
    state = {"started": time.time(), "results": {c: {} for c in configs}, "info": {c: [] for c in configs},
             "available": {}, "failures": [], "notes": [], "load0": loadavg(), "rounds_done": 0, "elapsed": 0.0, "profile": P}

    svc_log = os.path.join(a.out, "services.log")
    services = Proc("services", [LOADGEN, "serve", "--max-seconds", str(int(P["budget"] * 3 + 600))], svc_log,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = read_line(services.p, 10)
        if not line:
            log("services did not start: " + services.log_tail())
            return 2
        svc = {k: int(line[k]) for k in ("echo", "bulk", "banner")}
        log("services on %s (%s profile, %d rounds, budget %.0f s)" % (svc, "quick" if a.quick else "full",
                                                                      P["rounds"], P["budget"]))
        for r in range(P["rounds"]):
            if r > 0 and time.monotonic() - t_start > P["budget"]:
                log("time budget spent: stopping after %d rounds" % r)
                break
            for cfg in configs:
                if state["available"].get(cfg) not in (None, True):
                    continue  # not available: detected once
                t0 = time.monotonic()
                if t0 - t_start > P["budget"] * 1.5:
                    state["notes"].append("round %d stopped before %s: the run is over 1.5x its time budget" % (r + 1, cfg))
                    log(state["notes"][-1])
                    break
                setup = Setup(cfg, svc, os.path.join(a.out, "run", cfg))

                def fail(what, err, cfg=cfg, r=r):
                    msg = "%s round %d %s: %s" % (cfg, r + 1, what, err)
                    log("FAIL " + msg)
                    state["failures"].append(msg)

                try:
                    setup.start(v2ray_bin)
                except NotAvailable as e:
                    state["available"][cfg] = str(e) or "unknown"
                    log("%s not available: %s" % (cfg, e))
                    continue
                except StartFailed as e:
                    state["available"].setdefault(cfg, True)
                    fail("start", e)
                    continue
                state["available"][cfg] = True
                try:
                    m, info = measure(setup, P, fail)
                    dead = setup.check_alive()
                    if dead:
                        fail("process", dead + (" (rest of the round skipped)" if info.get("skipped") else ""))
                finally:
                    setup.stop()
                for k, v in m.items():
                    state["results"][cfg].setdefault(k, []).append(v)
                state["info"][cfg].append(info)
                log("round %d %-17s %5.1f s  %s" % (r + 1, cfg, time.monotonic() - t0, " ".join(
                    "%s=%s" % (k, fmt(k, v)) for k, v in m.items() if k in ("bulk_up_1", "pp64_p50", "churn_sps",
                                                                            "ttfb_p50", "idle_kib"))))
            state["rounds_done"] = r + 1
    finally:
        services.p.stdin.close()
        rc = services.stop()
        if rc not in (0, None, -signal.SIGTERM):
            state["failures"].append("services: loadgen serve exited %s: %s" % (rc, services.log_tail()))
    state["elapsed"] = time.monotonic() - t_start
    state["load1"] = loadavg()
    md = render(state, P, a.quick)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "raw.json"), "w") as f:
        json.dump(state, f, indent=1, default=str)
    have_png = plot(state, a.out)
    print(md)
    log("wrote %s/results.md%s (%.0f s)" % (a.out, " and bench.png" if have_png else "", state["elapsed"]))
    # one line for test runners: a configuration-round passes when it moved correct bytes
    measured = sum(len(v) for v in state["info"].values())
    failed = len(state["failures"])
    print("bench: %d passed, %d failed" % (max(measured - failed, 0), failed))
    return 1 if state["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
