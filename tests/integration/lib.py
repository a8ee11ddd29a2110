"""Small library for the revsock integration tests (Python 3 standard library only).

Contents: free ports, process handling (start / SIGTERM / SIGKILL, log files), the test
services (TCP echo, UDP echo, sink+source, banner, never-reading, closed port), config
generation from the reference V2Ray configs, /proc/net/tcp inspection, and `Env`, which
sets up one portal + one bridge for one test.

Everything binds to 127.0.0.1 only; every wait is bounded.
"""

import copy
import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REF_DIR = Path(os.environ.get("REVSOCK_REF_DIR", "/work/shared/reference/v2ray"))

MIB = 1024 * 1024


class TestFailure(Exception):
    """An assertion of a scenario failed."""


class TestSkip(Exception):
    """The scenario does not apply (reason in the message)."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


# --------------------------------------------------------------------------------------
# Reference configs (copies of shared/reference/v2ray/*.json, used when that dir is absent)

_EMBEDDED_PORTAL = {
    "log": {"loglevel": "warning", "access": "none"},
    "reverse": {"portals": [{"tag": "portal", "domain": "tunnel.v2ref.local"}]},
    "inbounds": [
        {"tag": "tunnel", "listen": "127.0.0.1", "port": 21001, "protocol": "dokodemo-door",
         "settings": {"address": "tunnel.v2ref.local", "port": 1, "network": "tcp"}},
        {"tag": "public", "listen": "127.0.0.1", "port": 21000, "protocol": "dokodemo-door",
         "settings": {"address": "127.0.0.1", "port": 25201, "network": "tcp"}},
        {"tag": "public-echo", "listen": "127.0.0.1", "port": 21002, "protocol": "dokodemo-door",
         "settings": {"address": "127.0.0.1", "port": 27007, "network": "tcp"}},
        {"tag": "public-udp", "listen": "127.0.0.1", "port": 21003, "protocol": "dokodemo-door",
         "settings": {"address": "127.0.0.1", "port": 27008, "network": "udp"}},
        {"tag": "public-dead", "listen": "127.0.0.1", "port": 21004, "protocol": "dokodemo-door",
         "settings": {"address": "127.0.0.1", "port": 27999, "network": "tcp"}},
    ],
    "outbounds": [{"tag": "block", "protocol": "blackhole", "settings": {}}],
    "routing": {"domainStrategy": "AsIs", "rules": [
        {"type": "field", "inboundTag": ["tunnel"], "domain": ["full:tunnel.v2ref.local"],
         "outboundTag": "portal"},
        {"type": "field", "inboundTag": ["public", "public-echo", "public-udp", "public-dead"],
         "outboundTag": "portal"},
    ]},
}

_EMBEDDED_BRIDGE = {
    "log": {"loglevel": "warning", "access": "none"},
    "reverse": {"bridges": [{"tag": "bridge", "domain": "tunnel.v2ref.local"}]},
    "outbounds": [
        {"tag": "direct", "protocol": "freedom", "settings": {}},
        {"tag": "interconn", "protocol": "freedom", "settings": {"redirect": "127.0.0.1:21001"}},
    ],
    "routing": {"domainStrategy": "AsIs", "rules": [
        {"type": "field", "inboundTag": ["bridge"], "domain": ["full:tunnel.v2ref.local"],
         "outboundTag": "interconn"},
        {"type": "field", "inboundTag": ["bridge"], "outboundTag": "direct"},
    ]},
}


def reference_config(which):
    """which = 'portal' or 'bridge'; a fresh dict."""
    p = REF_DIR / (which + ".json")
    if p.is_file():
        with open(p) as f:
            return json.load(f)
    return copy.deepcopy(_EMBEDDED_PORTAL if which == "portal" else _EMBEDDED_BRIDGE)


def reference_config_path(which):
    """Path of the unchanged reference config (written to tmpdir if only embedded)."""
    p = REF_DIR / (which + ".json")
    return p if p.is_file() else None


# --------------------------------------------------------------------------------------
# Ports

def free_port(udp_too=True):
    """A port that was free on 127.0.0.1 for TCP (and UDP) a moment ago (bind port 0)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if not udp_too:
            return port
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
    raise RuntimeError("no free port found")


def free_ports(n):
    seen = set()
    out = []
    for _ in range(n * 10):
        p = free_port()
        if p not in seen:
            seen.add(p)
            out.append(p)
        if len(out) == n:
            return out
    raise RuntimeError("no free ports")


# --------------------------------------------------------------------------------------
# /proc/net/tcp

TCP_ESTABLISHED = "01"
TCP_LISTEN = "0A"


def _proc_net_tcp():
    """Yield (local_port, remote_port, state, inode) for IPv4 and IPv6 TCP sockets."""
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            parts = ln.split()
            if len(parts) < 10:
                continue
            try:
                lport = int(parts[1].rsplit(":", 1)[1], 16)
                rport = int(parts[2].rsplit(":", 1)[1], 16)
                yield lport, rport, parts[3], int(parts[9])
            except (ValueError, IndexError):
                continue


def socket_inodes(pid):
    """Socket inodes held open by process pid."""
    out = set()
    d = "/proc/%d/fd" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in names:
        try:
            t = os.readlink(d + "/" + n)
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(int(t[8:-1]))
    return out


def sockets_on_port(port, state, pid=None):
    """Inodes of sockets with local port `port` in `state` (optionally owned by pid)."""
    owned = socket_inodes(pid) if pid is not None else None
    res = set()
    for lport, _rport, st, inode in _proc_net_tcp():
        if lport == port and st == state and inode != 0:
            if owned is None or inode in owned:
                res.add(inode)
    return res


# --------------------------------------------------------------------------------------
# Processes

_ALL_PROCS = []


class Proc:
    """A subprocess whose stdout+stderr go to a log file; stop() = SIGTERM, then SIGKILL."""

    def __init__(self, name, argv, logpath):
        self.name = name
        self.argv = argv
        self.logpath = Path(logpath)
        self._logf = open(self.logpath, "wb")
        self.started = time.monotonic()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                  stderr=subprocess.STDOUT, close_fds=True)
        self.pid = self.p.pid
        _ALL_PROCS.append(self)

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, term_timeout=3.0):
        """SIGTERM, wait, SIGKILL. Returns the exit status."""
        if self.p.poll() is None:
            self.signal(signal.SIGTERM)
            if self.wait(term_timeout) is None:
                self.signal(signal.SIGKILL)
                self.wait(5.0)
        try:
            self._logf.close()
        except OSError:
            pass
        return self.p.returncode

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.wait(5.0)

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def count_lines(self, regex):
        r = re.compile(regex)
        return sum(1 for ln in self.log_text().splitlines() if r.search(ln))

    def tail(self, n=15):
        lines = self.log_text().splitlines()
        return lines[-n:]


def kill_all_started():
    for p in _ALL_PROCS:
        if p.p.poll() is None:
            p.stop(1.0)


# --------------------------------------------------------------------------------------
# Services (threads in this process)

class _TCPService:
    """Accept loop on 127.0.0.1:0; handle(conn) runs in one thread per connection."""

    rcvbuf = None

    def __init__(self):
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(512)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.stopping = threading.Event()
        self.conns = []
        self.lock = threading.Lock()
        self.accepted = 0
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handle(c)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def handle(self, c):
        raise NotImplementedError

    def stop(self):
        self.stopping.set()
        try:
            self.ls.close()
        except OSError:
            pass
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        self.t.join(2.0)


class EchoTCP(_TCPService):
    def handle(self, c):
        c.settimeout(120)
        while not self.stopping.is_set():
            d = c.recv(262144)
            if not d:
                return
            c.sendall(d)


class BannerTCP(_TCPService):
    """Server speaks first: sends BANNER immediately on accept, then discards input."""

    BANNER = b"220 revsock-test banner\r\n"

    def handle(self, c):
        c.sendall(self.BANNER)
        c.settimeout(30)
        while not self.stopping.is_set():
            if not c.recv(65536):
                return


class StallTCP(_TCPService):
    """Accepts and never reads (small receive buffer so the sender stalls quickly)."""

    rcvbuf = 65536

    def handle(self, c):
        self.stopping.wait(120)


class SinkSourceTCP(_TCPService):
    """Header (24 bytes, big-endian): u64 upload_len, u64 download_len, u64 seed.
    Then, concurrently: receives upload_len bytes and hashes them; sends download_len
    pseudo-random bytes (stream(seed)). Results per connection in self.results."""

    def __init__(self):
        self.results = []
        self.done = threading.Condition()
        super().__init__()

    def handle(self, c):
        c.settimeout(120)
        hdr = recv_exact(c, 24)
        up_len, down_len, seed = struct.unpack(">QQQ", hdr)
        res = {"up_len": up_len, "down_len": down_len, "recv_count": 0, "recv_hash": None,
               "sent_count": 0, "sent_hash": None, "error": None}
        sender = threading.Thread(target=self._send, args=(c, down_len, seed, res), daemon=True)
        sender.start()
        h = hashlib.sha256()
        n = 0
        buf = bytearray(262144)
        mv = memoryview(buf)
        try:
            while n < up_len:
                k = c.recv_into(buf, min(len(buf), up_len - n))
                if k == 0:
                    break
                h.update(mv[:k])
                n += k
        except OSError as e:
            res["error"] = "recv: %s" % e
        res["recv_count"] = n
        res["recv_hash"] = h.hexdigest()
        sender.join(120)
        with self.done:
            self.results.append(res)
            self.done.notify_all()
        # keep the connection until the client closes (no half-close through V2Ray)
        try:
            c.settimeout(10)
            while c.recv(65536):
                pass
        except OSError:
            pass

    def _send(self, c, down_len, seed, res):
        h = hashlib.sha256()
        n = 0
        try:
            for chunk in random_stream(seed, down_len):
                c.sendall(chunk)
                h.update(chunk)
                n += len(chunk)
        except OSError as e:
            res["error"] = "send: %s" % e
        res["sent_count"] = n
        res["sent_hash"] = h.hexdigest()

    def wait_results(self, n, timeout):
        end = time.monotonic() + timeout
        with self.done:
            while len(self.results) < n:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.done.wait(left)
            return list(self.results)


class ScriptTCP(_TCPService):
    """Scripted per-connection behaviour for the stress scenarios.

    Header (17 bytes, big-endian): u8 mode, u64 length, u64 key. `key` names the
    connection's result (self.results[key], see wait_result) and seeds the stream.
      SEND_CLOSE:  send `length` bytes of random_stream(key), then close at once (FIN right
                   after the last byte: EOF with data in flight). The client sends nothing
                   after the header (unread input would turn the close into a RST).
      RECV_EOF:    receive until EOF (or error); count and SHA-256 of what arrived.
      RESET_AFTER: receive; once `length` bytes arrived, close with RST (SO_LINGER 0).
      SEND_UNTIL_END: send up to `length` bytes of random_stream(key) while watching the
                   connection; record when and how it ended (peer EOF, reset, send error).
      SEND_PACED:  like SEND_CLOSE, at `pace` bytes/s (an attribute the test sets; a
                   sender on a network link, not a loopback one).
    Result dict: mode, length, count (bytes received or sent), hash, how, t_end
    (time.monotonic() of the end / of the RST), error."""

    pace = 200e6
    SEND_CLOSE, RECV_EOF, RESET_AFTER, SEND_UNTIL_END, SEND_PACED = 1, 2, 3, 4, 5
    HDR = struct.Struct(">BQQ")

    def __init__(self):
        self.results = {}
        self.done = threading.Condition()
        super().__init__()

    @classmethod
    def header(cls, mode, length, key):
        return cls.HDR.pack(mode, length, key)

    def handle(self, c):
        c.settimeout(60)
        try:
            mode, length, key = self.HDR.unpack(recv_exact(c, self.HDR.size))
        except EOFError:
            return
        res = {"mode": mode, "length": length, "count": 0, "hash": None, "how": None,
               "t_end": None, "error": None}
        try:
            if mode in (self.SEND_CLOSE, self.SEND_PACED):
                h = hashlib.sha256()
                pacer = Pacer(self.pace if mode == self.SEND_PACED else None)
                try:
                    for chunk in random_stream(key, length, chunk=65536):
                        pacer.wait(len(chunk))
                        c.sendall(chunk)
                        h.update(chunk)
                        res["count"] += len(chunk)
                    res["how"] = "sent"
                except OSError as e:
                    res["error"] = "send: %s" % e
                res["hash"] = h.hexdigest()
                c.close()
                res["t_end"] = time.monotonic()
            elif mode in (self.RECV_EOF, self.RESET_AFTER):
                h = hashlib.sha256()
                buf = bytearray(262144)
                mv = memoryview(buf)
                try:
                    while True:
                        k = c.recv_into(buf)
                        if k == 0:
                            res["how"] = "eof"
                            break
                        h.update(mv[:k])
                        res["count"] += k
                        if mode == self.RESET_AFTER and res["count"] >= length:
                            close_rst(c)
                            res["how"] = "reset sent"
                            break
                except OSError as e:
                    res["how"] = "reset" if is_reset_error(e) else "error"
                    res["error"] = "recv: %s" % e
                res["t_end"] = time.monotonic()
                res["hash"] = h.hexdigest()
            elif mode == self.SEND_UNTIL_END:
                self._send_until_end(c, length, key, res)
            else:
                res["error"] = "unknown mode %d" % mode
        finally:
            with self.done:
                self.results[key] = res
                self.done.notify_all()

    def _send_until_end(self, c, length, key, res):
        lock = threading.Lock()

        def first(how):  # the first observed end wins
            with lock:
                if res["how"] is None:
                    res["how"], res["t_end"] = how, time.monotonic()

        def watch():  # the peer's FIN or RST, seen while the sender may be blocked
            try:
                while c.recv(65536):
                    pass
                first("eof")
            except OSError as e:
                first("reset" if is_reset_error(e) else "recv error: %s" % e)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        try:
            for chunk in random_stream(key, length, chunk=65536):
                c.sendall(chunk)
                res["count"] += len(chunk)
            res["sent_all"] = True
        except OSError as e:
            first("reset" if is_reset_error(e) else "send error: %s" % e)
            try:
                c.shutdown(socket.SHUT_RDWR)  # wake the watcher
            except OSError:
                pass
        w.join(30)
        first("no end seen within 30 s")

    def wait_result(self, key, timeout):
        end = time.monotonic() + timeout
        with self.done:
            while key not in self.results:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.done.wait(left)
            return self.results[key]


class EchoUDP:
    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.stopping = threading.Event()
        self.received = 0
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stopping.is_set():
            try:
                d, a = self.s.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received += 1
            try:
                self.s.sendto(d, a)
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        self.t.join(2.0)
        self.s.close()


class ClosedPort:
    """A TCP port bound but not listening: connecting to it is refused."""

    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]

    def stop(self):
        self.s.close()


# --------------------------------------------------------------------------------------
# Data helpers

def random_stream(seed, total, chunk=1 << 20):
    """Yield `total` pseudo-random bytes (deterministic for seed) in chunks."""
    r = random.Random(seed)
    left = total
    while left > 0:
        k = min(chunk, left)
        yield r.randbytes(k)
        left -= k


class Pacer:
    """Spaces writes to `rate` bytes/s on average (None: no pacing), with sleeps of at
    least 1 ms, as a sender behind a network link writes in bursts."""

    def __init__(self, rate):
        self.rate = rate
        self.t0 = time.monotonic()
        self.sent = 0

    def wait(self, n):
        if self.rate:
            ahead = self.t0 + self.sent / self.rate - time.monotonic()
            if ahead >= 0.001:
                time.sleep(ahead)
        self.sent += n


def stream_hash(seed, total):
    h = hashlib.sha256()
    for c in random_stream(seed, total):
        h.update(c)
    return h.hexdigest()


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += d
    return bytes(buf)


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def echo_once(port, payload, timeout):
    """connect, send payload, read it back, close. Returns None or an error string."""
    try:
        s = connect(port, timeout)
    except OSError as e:
        return "connect: %s" % e
    try:
        s.settimeout(timeout)
        s.sendall(payload)
        got = recv_exact(s, len(payload))
        if got != payload:
            return "echo mismatch"
        return None
    except (OSError, EOFError) as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()


def close_rst(s):
    """Close with RST (SO_LINGER 0) so no TIME_WAIT piles up."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def is_reset_error(e):
    return isinstance(e, OSError) and e.errno in (errno.ECONNRESET, errno.EPIPE,
                                                  errno.ECONNABORTED)


# --------------------------------------------------------------------------------------
# Pairings and environment

PAIRINGS = {
    # name: (portal impl, bridge impl)
    "revsock-revsock": ("revsock", "revsock"),
    "v2ray-bridge": ("revsock", "v2ray"),
    "v2ray-portal": ("v2ray", "revsock"),
    "v2ray-v2ray": ("v2ray", "v2ray"),
}


class Options:
    def __init__(self):
        self.mib = int(os.environ.get("REVSOCK_TEST_MIB", "64"))
        self.datapath = os.environ.get("REVSOCK_DATAPATH", "userspace")
        b = os.environ.get("REVSOCK_BIN", "build/revsock")
        self.revsock = str((ROOT / b) if not os.path.isabs(b) else Path(b))
        self.v2ray = os.environ.get("REVSOCK_V2RAY") or shutil.which("v2ray") or "/usr/bin/v2ray"
        self.keep_tmp = os.environ.get("REVSOCK_TEST_KEEP") == "1"
        # run the expected-SKIP scenarios anyway (harness self-check: they should FAIL)
        self.noskip = os.environ.get("REVSOCK_TEST_NOSKIP") == "1"


# The kernel-path watchdog's findings (user/kpath.c kwatch_tick); see Env.watchdog_lines.
WATCHDOG_RE = re.compile(r"moved only after a kick|in the mailbox not read for|and sends none|"
                         r"kicks did not help")


class Env:
    """One test's world: temp dir, services, one portal and one bridge process."""

    def __init__(self, opts, pairing, test_name, revsock_extra=None):
        self.opts = opts
        self.pairing = pairing
        self.portal_impl, self.bridge_impl = PAIRINGS[pairing]
        self.revsock_extra = dict(revsock_extra or {})
        self.tmp = Path(tempfile.mkdtemp(prefix="revsock-it-%s-" % test_name.replace("/", "_")))
        self.procs = []
        self.portal = None
        self.bridge = None
        self.bridges = []          # every bridge process started (restarts)
        self.seen_tunnels = set()  # tunnel socket inodes seen in the portal process
        self.services = []
        self.extra_inbounds = []   # (tag, portal port, service port), see add_inbound()
        try:
            self.echo = self._svc(EchoTCP())
            self.udp = self._svc(EchoUDP())
            self.sink = self._svc(SinkSourceTCP())
            self.banner = self._svc(BannerTCP())
            self.stall = self._svc(StallTCP())
            self.closed = self._svc(ClosedPort())
            (self.tunnel_port, self.p_sink, self.p_echo, self.p_udp, self.p_dead,
             self.p_banner, self.p_stall) = free_ports(7)
        except BaseException:
            self.close(True)
            raise

    def _svc(self, s):
        self.services.append(s)
        return s

    def add_inbound(self, tag, service):
        """Before start(): one more dokodemo inbound `tag` on the portal (routed to the
        portal like the others) whose target is `service` (a _TCPService, stopped at
        close). Returns the portal port."""
        self._svc(service)
        port = free_port()
        self.extra_inbounds.append((tag, port, service.port))
        return port

    # ---- configs
    def portal_config(self, impl):
        c = reference_config("portal")
        c["log"] = {"loglevel": "info", "access": "none"}
        targets = {
            "tunnel": self.tunnel_port,
            "public": self.p_sink,
            "public-echo": self.p_echo,
            "public-udp": self.p_udp,
            "public-dead": self.p_dead,
        }
        svc = {"public": self.sink.port, "public-echo": self.echo.port,
               "public-udp": self.udp.port, "public-dead": self.closed.port}
        for ib in c["inbounds"]:
            tag = ib["tag"]
            if tag in targets:
                ib["port"] = targets[tag]
                ib["listen"] = "127.0.0.1"
            if tag in svc:
                ib["settings"]["address"] = "127.0.0.1"
                ib["settings"]["port"] = svc[tag]
        extra = [("public-banner", self.p_banner, self.banner.port),
                 ("public-stall", self.p_stall, self.stall.port)]
        extra += self.extra_inbounds  # add_inbound(); empty unless a scenario asked
        for tag, port, sport in extra:
            c["inbounds"].append({"tag": tag, "listen": "127.0.0.1", "port": port,
                                  "protocol": "dokodemo-door",
                                  "settings": {"address": "127.0.0.1", "port": sport,
                                               "network": "tcp"}})
        for r in c["routing"]["rules"]:
            if "public" in r.get("inboundTag", []):
                r["inboundTag"] = r["inboundTag"] + [t for t, _, _ in extra]
        if impl == "revsock" and self.revsock_extra:
            c["revsock"] = dict(self.revsock_extra)
        return c

    def bridge_config(self, impl):
        c = reference_config("bridge")
        c["log"] = {"loglevel": "info", "access": "none"}
        for ob in c["outbounds"]:
            if ob["tag"] == "interconn":
                ob["settings"]["redirect"] = "127.0.0.1:%d" % self.tunnel_port
        if impl == "revsock" and self.revsock_extra:
            c["revsock"] = dict(self.revsock_extra)
        return c

    def write_config(self, name, cfg):
        p = self.tmp / (name + ".json")
        with open(p, "w") as f:
            json.dump(cfg, f, indent=2)
        return p

    def argv(self, impl, cfgpath):
        if impl == "revsock":
            return [self.opts.revsock, "run", "-c", str(cfgpath), "--log",
                    os.environ.get("REVSOCK_TEST_LOG", "info"),
                    "--datapath", self.opts.datapath]
        return [self.opts.v2ray, "-config", str(cfgpath)]

    # ---- processes
    def start_portal(self):
        cfg = self.write_config("portal", self.portal_config(self.portal_impl))
        self.portal = Proc("portal(%s)" % self.portal_impl, self.argv(self.portal_impl, cfg),
                           self.tmp / "portal.log")
        self.procs.append(self.portal)
        return self.portal

    def start_bridge(self):
        n = len(self.bridges) + 1
        cfg = self.write_config("bridge", self.bridge_config(self.bridge_impl))
        b = Proc("bridge(%s)#%d" % (self.bridge_impl, n), self.argv(self.bridge_impl, cfg),
                 self.tmp / ("bridge-%d.log" % n))
        self.bridge = b
        self.bridges.append(b)
        self.procs.append(b)
        return b

    def wait_portal_listening(self, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.portal.alive():
                raise TestFailure("%s exited with %s before listening"
                                  % (self.portal.name, self.portal.p.returncode))
            if sockets_on_port(self.tunnel_port, TCP_LISTEN, self.portal.pid) and \
                    sockets_on_port(self.p_echo, TCP_LISTEN, self.portal.pid):
                return
            time.sleep(0.02)
        raise TestFailure("portal not listening on tunnel port %d after %.0fs"
                          % (self.tunnel_port, timeout))

    def poll_tunnels(self):
        """Update and return the number of tunnels seen so far.

        Sources: ESTABLISHED sockets on the tunnel port inside the portal process (any
        impl) and, for revsock processes, the log lines of the CLI contract. The result
        is the minimum over the sources, so every source must have seen a tunnel."""
        if self.portal is not None and self.portal.alive():
            self.seen_tunnels |= sockets_on_port(self.tunnel_port, TCP_ESTABLISHED,
                                                 self.portal.pid)
        counts = [len(self.seen_tunnels)]
        if self.portal_impl == "revsock" and self.portal is not None:
            counts.append(self.portal.count_lines(r"tunnel \S+ up from"))
        if self.bridge_impl == "revsock" and self.bridges:
            counts.append(sum(b.count_lines(r"tunnel \S+ connected to") for b in self.bridges))
        return min(counts)

    def live_tunnels(self):
        if self.portal is None or not self.portal.alive():
            return 0
        return len(sockets_on_port(self.tunnel_port, TCP_ESTABLISHED, self.portal.pid))

    def wait_tunnels(self, n, timeout=10.0, poll=0.02):
        """Wait until at least n tunnels were seen; returns the monotonic time seen."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for p in (self.portal, self.bridge):
                if p is not None and not p.alive():
                    raise TestFailure("%s exited with %s" % (p.name, p.p.returncode))
            if self.poll_tunnels() >= n:
                return time.monotonic()
            time.sleep(poll)
        raise TestFailure("tunnel #%d not up after %.0fs (seen %d)"
                          % (n, timeout, self.poll_tunnels()))

    def start(self, timeout=10.0):
        """Start portal, wait until it listens, start bridge, wait for the tunnel."""
        self.start_portal()
        self.wait_portal_listening(timeout)
        self.start_bridge()
        self.wait_tunnels(1, timeout)

    def watchdog_lines(self):
        """Lines where a revsock daemon's kernel-path watchdog (user/kpath.c) found
        bytes that had stopped moving: a kernel defect or a daemon bug, never normal."""
        out = []
        for p in self.procs:
            if p.name.startswith(("portal(revsock", "bridge(revsock")):
                out += ["%s: %s" % (p.name, ln) for ln in p.log_text().splitlines()
                        if WATCHDOG_RE.search(ln)]
        return out

    def tails(self, n=15):
        out = []
        for p in self.procs:
            out.append("  --- %s (pid %d, rc %s) %s" % (p.name, p.pid, p.p.returncode, p.logpath))
            out.extend("    " + ln for ln in p.tail(n))
        return out

    def close(self, failed):
        for p in self.procs:
            p.stop()
        for s in self.services:
            try:
                s.stop()
            except Exception:
                pass
        if not failed and not self.opts.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
