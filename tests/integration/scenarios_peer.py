"""Malformed peers: a fake bridge and a fake portal that speak broken Mux.Cool.

A malformed tunnel must be closed with a log line naming the reason, never crash the
process, and never touch another tunnel's sessions (checked byte-exact). revsock only:
the fake peer stands in for the other side.
"""
import random
import socket
import struct
import threading
import time

from lib import check, connect, echo_once, recv_exact, TestFailure

# metaLen 35, sid 1, New, Data, UDP, port 0, domain (26) "reverse.internal.v2ray.com"
CONTROL_NEW_PREFIX = bytes.fromhex("00230001010102000002" "1a") + b"reverse.internal.v2ray.com"


def _read_until_closed(s, timeout):
    """Read and discard until EOF/RST; returns seconds taken, or None on timeout."""
    t0 = time.monotonic()
    s.settimeout(0.1)
    while time.monotonic() - t0 < timeout:
        try:
            d = s.recv(65536)
            if not d:
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return None


class _Pinger(threading.Thread):
    """A good session that keeps echoing checked random chunks while the test runs."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.rounds = 0
        self.error = None

    def run(self):
        rng = random.Random(7)
        try:
            s = connect(self.port)
            s.settimeout(5.0)
            end = time.monotonic() + 30.0  # bounded
            while not self.stop.is_set() and time.monotonic() < end:
                msg = rng.randbytes(rng.randint(1, 4096))
                s.sendall(msg)
                if recv_exact(s, len(msg)) != msg:
                    self.error = "echo mismatch after %d rounds" % self.rounds
                    return
                self.rounds += 1
                time.sleep(0.005)
            s.close()
        except (OSError, EOFError) as e:
            self.error = "%s after %d rounds" % (e, self.rounds)


def _new_frame(sid, network, port, ipv4, data=b""):
    meta = struct.pack(">HBBBH", sid, 1, 1 if data else 0, network, port) + b"\x01" + socket.inet_aton(ipv4)
    f = struct.pack(">H", len(meta)) + meta
    if data:
        f += struct.pack(">H", len(data)) + data
    return f


def _keep_frame(sid, data):
    return struct.pack(">HHBB", 4, sid, 2, 1) + struct.pack(">H", len(data)) + data


BAD_FROM_BRIDGE = [
    ("metalen over 512", struct.pack(">H", 600) + bytes(600), "invalid metalen"),
    ("metalen under 4", bytes.fromhex("0002 0005".replace(" ", "")), "insufficient metadata"),
    ("unknown status", bytes.fromhex("0004 0002 09 00".replace(" ", "")), "unknown session status"),
    ("unknown network", _new_frame(2, 7, 80, "127.0.0.1"), "unknown network"),
    ("invalid domain", struct.pack(">HHBBBHBB", 14, 2, 1, 0, 1, 80, 2, 5) + b"a b c", "invalid domain"),
]


def malformed_from_fake_bridge(env):
    """A fake bridge sends broken frames to a revsock portal: each fake tunnel is
    closed with a log line, the portal keeps serving the real tunnel byte-exact."""
    env.start()
    pinger = _Pinger(env.p_echo)
    pinger.start()
    try:
        times = []
        for name, payload, reason in BAD_FROM_BRIDGE:
            s = connect(env.tunnel_port)
            s.settimeout(2.0)
            head = recv_exact(s, len(CONTROL_NEW_PREFIX))
            # option byte 5 is 0x01 (first heartbeat inside) or 0x00 (empty heartbeat, 1 in 64)
            check(head[:5] + head[6:] == CONTROL_NEW_PREFIX[:5] + CONTROL_NEW_PREFIX[6:] and head[5] in (0, 1),
                  "%s: portal did not open the control session first: %r" % (name, head[:16]))
            s.sendall(payload)
            dt = _read_until_closed(s, 2.0)
            s.close()
            check(dt is not None, "%s: portal kept the malformed tunnel open for 2 s" % name)
            times.append(dt)
            check(env.portal.alive(), "%s: portal died" % name)
            check(env.portal.count_lines(reason) >= 1, "%s: no log line naming %r" % (name, reason))
        # random garbage after a valid start, 50 connections
        rng = random.Random(11)
        for i in range(50):
            s = connect(env.tunnel_port)
            s.settimeout(2.0)
            recv_exact(s, len(CONTROL_NEW_PREFIX))
            try:
                s.sendall(rng.randbytes(rng.randint(1, 3000)))
            except OSError:
                pass
            s.close()
        time.sleep(0.2)
        check(env.portal.alive(), "portal died on random garbage")
    finally:
        pinger.stop.set()
        pinger.join(10)
    check(pinger.error is None, "good session broken: %s" % pinger.error)
    check(pinger.rounds > 10, "good session made only %d rounds" % pinger.rounds)
    err = echo_once(env.p_echo, b"after-the-garbage", timeout=5.0)
    check(err is None, "new session after the garbage: %s" % err)
    return "%d malformed tunnels closed (max %.0f ms), 50 garbage tunnels; good session %d rounds byte-exact" % (
        len(times), 1000 * max(times), pinger.rounds)


class _FakePortal:
    def __init__(self, port):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(16)
        self.ls.settimeout(10.0)

    def accept(self, timeout):
        self.ls.settimeout(timeout)
        c, _ = self.ls.accept()
        c.settimeout(5.0)
        return c

    def close(self):
        self.ls.close()


def _read_frames_until(s, sid, want, timeout):
    """Parse bridge->portal frames until `want` bytes of session sid arrived."""
    buf = b""
    got = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(got) < len(want):
        buf += s.recv(65536)
        while len(buf) >= 2:
            ml = struct.unpack(">H", buf[:2])[0]
            if len(buf) < 2 + ml:
                break
            fsid, status, opt = struct.unpack(">HBB", buf[2:6])
            pos = 2 + ml
            data = b""
            if opt & 1:
                if len(buf) < pos + 2:
                    break
                dl = struct.unpack(">H", buf[pos:pos + 2])[0]
                if len(buf) < pos + 2 + dl:
                    break
                data = buf[pos + 2:pos + 2 + dl]
                pos += 2 + dl
            buf = buf[pos:]
            if fsid == sid and status == 2:
                got += data
    return got


def malformed_from_fake_portal(env):
    """A fake portal serves a revsock bridge a good session, then broken frames: the
    bridge closes that tunnel with a log line naming the reason and dials a new one."""
    fake = _FakePortal(env.tunnel_port)
    env.start_bridge()
    try:
        cases = [
            ("metalen over 512", struct.pack(">H", 600) + bytes(600), "invalid metalen"),
            ("UDP frame over 2048", _new_frame(3, 2, env.udp.port, "127.0.0.1", bytes(3000)),
             "UDP frame of 3000 bytes"),
            ("unknown status", bytes.fromhex("000400020900"), "unknown session status"),
        ]
        redial = []
        for i, (name, payload, reason) in enumerate(cases):
            t_closed = time.monotonic()
            c = fake.accept(10.0)
            if i:
                redial.append(time.monotonic() - t_closed)
            c.sendall(CONTROL_NEW_PREFIX + bytes.fromhex("0003") + bytes.fromhex("9a0600"))
            msg = ("hello %d through a fake portal" % i).encode()
            c.sendall(_new_frame(2, 1, env.echo.port, "127.0.0.1", msg))
            got = _read_frames_until(c, 2, msg, 5.0)
            check(got == msg, "%s: echo through the bridge: %r" % (name, got))
            c.sendall(payload)
            dt = _read_until_closed(c, 2.0)
            c.close()
            check(dt is not None, "%s: bridge kept the malformed tunnel for 2 s" % name)
            check(env.bridge.alive(), "%s: bridge died" % name)
            check(env.bridge.count_lines(reason) >= 1, "%s: no log line naming %r" % (name, reason))
            t_closed = time.monotonic()
        c = fake.accept(10.0)
        redial.append(time.monotonic() - t_closed)
        c.close()
    finally:
        fake.close()
    check(max(redial) < 2.5, "bridge redialled after %.2f s" % max(redial))
    return "%d malformed tunnels closed; redial after %.0f ms max" % (len(cases), 1000 * max(redial))


PEER_SCENARIOS = [
    ("malformed_from_fake_bridge", malformed_from_fake_bridge),
    ("malformed_from_fake_portal", malformed_from_fake_portal),
]
