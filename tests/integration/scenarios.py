"""The integration scenarios. Each takes an Env (already started unless noted) and returns
an optional info string (printed in brackets after PASS); it raises TestFailure or
TestSkip. See README.md for what each checks."""

import hashlib
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import threading
import time

from lib import (MIB, Env, TestFailure, TestSkip, check, close_rst, connect, echo_once,
                 free_ports, is_reset_error, random_stream, recv_exact, reference_config,
                 reference_config_path)

SPEC_17 = "V2Ray deadlocks the whole tunnel here (spec §1.7); revsock+revsock only"
STALL_S = 2  # sessionStallTimeout given to revsock processes in the stall scenarios


# --------------------------------------------------------------------------------------
# helpers

def _shut_close(s):
    """shutdown first: wakes a thread still blocked in sendall on s."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def _bulk_deadline(mib):
    return 30.0 + mib * 0.5


def _pingpong(port_or_sock, rounds, deadline, size=64, stop=None):
    """Do up to `rounds` ping-pongs before `deadline` (monotonic). Returns
    (done, max_rtt, error). If stop (Event) is given, runs until stop is set instead."""
    s = port_or_sock if isinstance(port_or_sock, socket.socket) else connect(port_or_sock)
    rng = random.Random(os.getpid() ^ int(time.time()))
    done, max_rtt, err = 0, 0.0, None
    try:
        while (done < rounds) if stop is None else not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                err = "deadline reached after %d round trips" % done
                break
            msg = rng.randbytes(size)
            t = time.monotonic()
            s.settimeout(left)
            s.sendall(msg)
            got = recv_exact(s, size)
            if got != msg:
                err = "ping-pong data mismatch at round %d" % done
                break
            max_rtt = max(max_rtt, time.monotonic() - t)
            done += 1
            if stop is not None:
                stop.wait(0.01)
    except (OSError, EOFError) as e:
        err = "round %d: %s: %s" % (done, type(e).__name__, e)
    finally:
        if s is not port_or_sock:
            s.close()
    return done, max_rtt, err


class _Uploader(threading.Thread):
    """Sends `total` pseudo-random bytes on sock, never reads. Records the outcome."""

    def __init__(self, sock, total, send_timeout):
        super().__init__(daemon=True)
        self.sock, self.total = sock, total
        self.sock.settimeout(send_timeout)
        self.sent = 0
        self.error = None
        self.ended_at = None

    def run(self):
        try:
            for chunk in random_stream(12345, self.total, chunk=65536):
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except Exception as e:  # noqa: BLE001 - we record whatever ended it
            self.error = e
        self.ended_at = time.monotonic()

    def abort(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.join(3.0)
        close_rst(self.sock)


# --------------------------------------------------------------------------------------
# 1. bulk through the echo service, and through the sink+source service

def tcp_echo(env):
    n = env.opts.mib * MIB
    deadline = time.monotonic() + _bulk_deadline(env.opts.mib)
    s = connect(env.p_echo, timeout=5)
    s.settimeout(20)
    sent = {"hash": None, "count": 0, "err": None}

    def writer():
        h = hashlib.sha256()
        try:
            for chunk in random_stream(777, n):
                s.sendall(chunk)
                h.update(chunk)
                sent["count"] += len(chunk)
        except OSError as e:
            sent["err"] = e
        sent["hash"] = h.hexdigest()

    t0 = time.monotonic()
    w = threading.Thread(target=writer, daemon=True)
    w.start()
    h = hashlib.sha256()
    got = 0
    buf = bytearray(262144)
    mv = memoryview(buf)
    try:
        while got < n and time.monotonic() < deadline:
            k = s.recv_into(buf, min(len(buf), n - got))
            if k == 0:
                break
            h.update(mv[:k])
            got += k
    except OSError as e:
        raise TestFailure("download after %d bytes: %s" % (got, e))
    finally:
        if got < n:
            _shut_close(s)  # failed: wake the writer
        w.join(max(0.1, deadline - time.monotonic()))
        dt = time.monotonic() - t0
        _shut_close(s)
    check(sent["err"] is None, "upload: %s" % sent["err"])
    check(sent["count"] == n, "uploaded %d of %d bytes" % (sent["count"], n))
    check(got == n, "echoed %d of %d bytes" % (got, n))
    check(h.hexdigest() == sent["hash"], "SHA-256 of echoed data differs from sent data")
    return "%d MiB each way, %.0f MiB/s" % (env.opts.mib, env.opts.mib / dt)


def sink_bulk(env, mib, seed, deadline_s=None):
    """mib MiB up and a different mib MiB down through the sink, concurrently; byte-exact
    both ways (service vs user). Returns the seconds taken."""
    n = mib * MIB
    deadline = time.monotonic() + (deadline_s or 30.0 + mib * 0.5)
    n_before = len(env.sink.results)
    s = connect(env.p_sink, timeout=5)
    s.settimeout(20)
    s.sendall(struct.pack(">QQQ", n, n, seed))
    up = {"hash": None, "count": 0, "err": None}

    def writer():
        h = hashlib.sha256()
        try:
            for chunk in random_stream(seed + 1, n):
                s.sendall(chunk)
                h.update(chunk)
                up["count"] += len(chunk)
        except OSError as e:
            up["err"] = e
        up["hash"] = h.hexdigest()

    t0 = time.monotonic()
    w = threading.Thread(target=writer, daemon=True)
    w.start()
    h = hashlib.sha256()
    got = 0
    buf = bytearray(262144)
    mv = memoryview(buf)
    try:
        while got < n and time.monotonic() < deadline:
            k = s.recv_into(buf, min(len(buf), n - got))
            if k == 0:
                break
            h.update(mv[:k])
            got += k
        check(got == n, "bulk download: user got %d of %d bytes" % (got, n))
        w.join(max(0.1, deadline - time.monotonic()))
        res = env.sink.wait_results(n_before + 1, max(0.1, deadline - time.monotonic()))
    except OSError as e:
        raise TestFailure("bulk download after %d bytes: %s" % (got, e))
    finally:
        dt = time.monotonic() - t0
        _shut_close(s)
        w.join(5)
    check(up["err"] is None, "bulk upload: %s" % up["err"])
    mine = [r for r in res[n_before:] if r["up_len"] == n and r["down_len"] == n]
    check(mine, "sink service reported no result for the bulk session")
    r = mine[0]
    check(r["error"] is None, "bulk: service: %s" % r["error"])
    check(r["recv_count"] == n, "bulk: service received %d of %d bytes" % (r["recv_count"], n))
    check(r["recv_hash"] == up["hash"], "bulk: upload SHA-256 differs (user vs service)")
    check(r["sent_count"] == n, "bulk: service sent %d of %d bytes" % (r["sent_count"], n))
    check(h.hexdigest() == r["sent_hash"], "bulk: download SHA-256 differs (service vs user)")
    return dt


def tcp_bulk(env):
    dt = sink_bulk(env, env.opts.mib, 4242, _bulk_deadline(env.opts.mib))
    return "%d MiB up + %d MiB down, %.0f MiB/s" % (env.opts.mib, env.opts.mib,
                                                     2 * env.opts.mib / dt)


def struct_hdr(up, down, seed):
    import struct
    return struct.pack(">QQQ", up, down, seed)


# --------------------------------------------------------------------------------------
# 2. UDP

def udp_echo(env, count=200, window=16, timeout=5.0):
    rng = random.Random(31337)
    sizes = [1, 1400] + [rng.randint(1, 1400) for _ in range(count - 2)]
    rng.shuffle(sizes)
    payloads = []
    for i, sz in enumerate(sizes):
        tag = i.to_bytes(2, "big")
        p = (tag + rng.randbytes(sz))[:sz] if sz >= 2 else bytes([i & 0xff])
        payloads.append(p)
    expected = {}
    for p in payloads:
        expected[p] = expected.get(p, 0) + 1
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    u.connect(("127.0.0.1", env.p_udp))
    # phase 1: one at a time, each reply must come back promptly (a reply that only
    # leaves when some other traffic arrives, e.g. the next datagram or a heartbeat, fails)
    lat = []
    try:
        for i in range(10):
            msg = b"one-at-a-time %d " % i + rng.randbytes(50 * i)
            t = time.monotonic()
            u.send(msg)
            u.settimeout(0.5)
            try:
                d = u.recv(65535)
            except socket.timeout:
                raise TestFailure("one-at-a-time datagram #%d (%d B) not echoed within 500 ms "
                                  "(earlier ones: %s ms)" % (i, len(msg), "/".join(
                                      "%.0f" % (x * 1000) for x in lat) or "-"))
            check(d == msg, "one-at-a-time datagram #%d: wrong content (%d B)" % (i, len(d)))
            lat.append(time.monotonic() - t)
    except BaseException:
        u.close()
        raise
    # phase 2: the 200 datagrams, up to `window` in flight
    end = time.monotonic() + timeout
    sent = received = 0
    bad = []
    sent_at = {}
    max_lat = 0.0
    t0 = time.monotonic()
    try:
        while received < count and time.monotonic() < end:
            while sent < count and sent - received < window:
                u.send(payloads[sent])
                sent_at.setdefault(payloads[sent], []).append(time.monotonic())
                sent += 1
            u.settimeout(max(0.01, min(0.5, end - time.monotonic())))
            try:
                d = u.recv(65535)
            except socket.timeout:
                continue
            if expected.get(d, 0) <= 0:
                bad.append(len(d))
            else:
                expected[d] -= 1
                received += 1
                max_lat = max(max_lat, time.monotonic() - sent_at[d].pop(0))
        # anything extra (duplicates) within a short grace period?
        u.settimeout(0.2)
        try:
            d = u.recv(65535)
            bad.append(len(d))
        except socket.timeout:
            pass
    finally:
        u.close()
    check(not bad, "%d unexpected/duplicate datagrams (sizes %s)" % (len(bad), bad[:5]))
    if received != count:
        missing = [(i, len(p)) for i, p in enumerate(payloads) if expected.get(p, 0) > 0]
        raise TestFailure("%d of %d datagrams echoed within %.0fs; the UDP echo service got "
                          "%d; missing (send index, size): %s"
                          % (received, count, timeout, env.udp.received, missing[:8]))
    return "10 one at a time (max %.1f ms), then %d datagrams 1..1400 B in %.2fs, max " \
        "latency %.0f ms" % (max(lat) * 1000, count, time.monotonic() - t0, max_lat * 1000)


# --------------------------------------------------------------------------------------
# 3. refused target

def refused_target(env):
    stop = threading.Event()
    pp = {}
    e = connect(env.p_echo)

    def pinger():
        pp["r"] = _pingpong(e, 10 ** 6, time.monotonic() + 20, size=32, stop=stop)

    t = threading.Thread(target=pinger, daemon=True)
    t.start()
    try:
        time.sleep(0.1)
        r = connect(env.p_dead)
        t0 = time.monotonic()
        outcome = None
        try:
            r.sendall(b"hello refused target\n")
            r.settimeout(3.5)
            d = r.recv(4096)
            outcome = "EOF" if d == b"" else "data %r" % d[:32]
        except socket.timeout:
            outcome = "timeout"
        except OSError as ex:
            outcome = "reset" if is_reset_error(ex) else "error %s" % ex
        dt = time.monotonic() - t0
        r.close()
        check(outcome in ("EOF", "reset"), "user on refused target got %s after %.2fs"
              % (outcome, dt))
        check(dt <= 3.0, "user saw %s only after %.2fs (> 3s)" % (outcome, dt))
        time.sleep(0.3)  # the echo session keeps running after the refused session ended
    finally:
        stop.set()
        t.join(5)
        e.close()
    done, max_rtt, err = pp.get("r", (0, 0, "pinger did not finish"))
    check(err is None, "concurrent echo session: %s" % err)
    check(done >= 10, "concurrent echo session made only %d round trips" % done)
    return "%s after %.2fs; echo session %d round trips, max rtt %.0f ms" % (
        outcome, dt, done, max_rtt * 1000)


# --------------------------------------------------------------------------------------
# 4. many sessions -> DRAIN -> second tunnel

def many_sessions_drain(env, sessions=300):
    check(env.poll_tunnels() == 1, "expected exactly one tunnel at start")
    fails = []
    rng = random.Random(5)
    t0 = time.monotonic()
    for i in range(sessions):
        err = echo_once(env.p_echo, rng.randbytes(16), timeout=5.0)
        if err:
            fails.append("#%d: %s" % (i, err))
            if len(fails) >= 5:
                break
        if i % 10 == 0:
            env.poll_tunnels()
    dt = time.monotonic() - t0
    check(not fails, "%d sessions failed: %s" % (len(fails), "; ".join(fails[:3])))
    # V2Ray checks DRAIN at each 2-s heartbeat and the bridge redials at its 2-s tick.
    # Users must be served all along: keep opening sessions (every ~20 ms) until the
    # second tunnel is up, then a few more on it.
    t1 = time.monotonic()
    end = t1 + 8.0
    extra = 0
    t_new = None
    while time.monotonic() < end:
        err = echo_once(env.p_echo, rng.randbytes(16), timeout=5.0)
        extra += 1
        check(err is None, "session #%d (%.2fs after the first 300, second tunnel %s): %s"
              % (sessions + extra, time.monotonic() - t1,
                 "up" if t_new else "not up yet", err))
        if t_new is None and env.poll_tunnels() >= 2:
            t_new = time.monotonic()
            end = min(end, t_new + 0.2)
        time.sleep(0.02)
    check(t_new is not None, "no second tunnel within 8 s after %d sessions (seen %d)"
          % (sessions + extra, env.poll_tunnels()))
    info = "%d+%d sessions; 2nd tunnel %.1fs after the first %d (which took %.2fs)" % (
        sessions, extra, t_new - t1, sessions, dt)
    if env.portal_impl == "revsock":
        m = re.findall(r"tunnel \S+ draining after (\d+) sessions", env.portal.log_text())
        check(m, "revsock portal did not log 'tunnel <id> draining after <n> sessions'")
        check(int(m[0]) > 256, "revsock portal drained after only %s sessions" % m[0])
        info += "; portal: draining after %s sessions" % m[0]
    return info


# --------------------------------------------------------------------------------------
# 5. bridge restart

def bridge_restart(env):
    if env.portal_impl == "v2ray" and not env.opts.noskip:
        raise TestSkip("expected: a V2Ray portal keeps picking the dead tunnel for up to "
                       "30 s after a bridge restart (V2Ray quirk, spec §2.3)")
    err = echo_once(env.p_echo, b"before-restart!!", timeout=5.0)
    check(err is None, "echo before restart: %s" % err)
    n = env.poll_tunnels()
    env.bridge.kill9()
    env.start_bridge()
    t_up = env.wait_tunnels(n + 1, timeout=10.0, poll=0.01)
    deadline = t_up + 1.0
    attempts = 0
    last = None
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        attempts += 1
        last = echo_once(env.p_echo, b"after-restart-%02d" % (attempts % 100),
                         timeout=max(0.05, deadline - now))
        if last is None:
            t_ok = time.monotonic()
            check(t_ok - t_up <= 1.0, "served only %.0f ms after the new tunnel was up"
                  % ((t_ok - t_up) * 1000))
            return "served %.0f ms after new tunnel up (attempt %d)" % (
                (t_ok - t_up) * 1000, attempts)
        # next attempt 50 ms after the previous one started
        time.sleep(max(0.0, min(0.05 - (time.monotonic() - now), deadline - time.monotonic())))
    raise TestFailure("no user connection served within 1 s of the new tunnel (%d attempts, "
                      "last: %s)" % (attempts, last))


# --------------------------------------------------------------------------------------
# 6./7. a stalled session must not stall the others

B_MAX_RTT_S = 1.0


def _stall_common(env, port_a, what):
    if env.pairing != "revsock-revsock" and not env.opts.noskip:
        raise TestSkip(SPEC_17)
    a = connect(port_a)
    up = _Uploader(a, 64 * MIB, send_timeout=STALL_S + 15)
    t_a = time.monotonic()
    up.start()
    try:
        time.sleep(0.5)  # let A's pipeline fill up
        t_b = time.monotonic()
        done, max_rtt, err = _pingpong(env.p_echo, 100, t_b + STALL_S + 3.0, size=64)
        check(err is None and done == 100,
              "session B (%s stalled): %s" % (what, err or "%d/100 round trips" % done))
        info = "B: 100 round trips in %.2fs, max rtt %.0f ms" % (time.monotonic() - t_b,
                                                                  max_rtt * 1000)
        # revsock portal and bridge pause A alone (per-session flow control, both ways), so
        # B never waits for A's stall timer (it did, ~STALL_S, before that existed)
        check(max_rtt < B_MAX_RTT_S, "session B waited %.0f ms for a round trip beside the "
              "stalled A (limit %.0f ms): %s" % (max_rtt * 1000, B_MAX_RTT_S * 1000, info))
        return up, t_a, info
    except BaseException:
        up.abort()
        raise


def user_stops_reading(env):
    up, t_a, info = _stall_common(env, env.p_echo, "user A not reading")
    try:
        up.join(max(0.1, t_a + STALL_S + 6.0 - time.monotonic()))
        if not up.is_alive() and up.error is not None:
            check(isinstance(up.error, OSError), "session A's upload: %r" % up.error)
            return info + "; A ended after %.1fs (%s, %d MiB sent)" % (
                up.ended_at - t_a, type(up.error).__name__, up.sent // MIB)
        # upload still blocked, or it completed (the peer swallowed the rest): was the
        # session ended? Read A now: expect (buffered data then) EOF or a reset.
        a = up.sock
        end = time.monotonic() + 3.0
        outcome = "still open"
        try:
            while time.monotonic() < end:
                a.settimeout(max(0.01, end - time.monotonic()))
                if not a.recv(1 << 20):
                    outcome = "EOF"
                    break
        except socket.timeout:
            pass
        except OSError as e:
            outcome = "reset" if is_reset_error(e) else "error %s" % e
        state = "upload blocked" if up.is_alive() else \
            "upload of all %d MiB completed" % (up.sent // MIB)
        check(outcome in ("EOF", "reset"),
              "session A not reset/ended %.0fs after it stalled (%s; %s on read)"
              % (STALL_S + 6, state, outcome))
        return info + "; A ended (%s; %s on read)" % (state, outcome)
    finally:
        up.abort()


def service_stops_reading(env):
    up, t_a, info = _stall_common(env, env.p_stall, "service not reading")
    try:
        # A itself must still be ended by the stall timer (paused or not, its buffer is full)
        up.join(max(0.1, t_a + STALL_S + 6.0 - time.monotonic()))
        check(not up.is_alive(), "session A (service not reading) still open %.0fs after it "
              "stalled: %s" % (STALL_S + 6, info))
        state = "ended: %s" % (type(up.error).__name__ if up.error else "completed")
        return info + "; A %s after %.1fs, %d MiB sent" % (state, up.ended_at - t_a,
                                                          up.sent // MIB)
    finally:
        up.abort()


# --------------------------------------------------------------------------------------
# 8. SIGTERM

def sigterm(env):
    err = echo_once(env.p_echo, b"before-sigterm!!", timeout=5.0)
    check(err is None, "echo before SIGTERM: %s" % err)
    idle = connect(env.p_echo)  # an open session while stopping
    try:
        procs = [env.portal, env.bridge]
        t0 = time.monotonic()
        for p in procs:
            p.signal(signal.SIGTERM)
        res = {}
        for p in procs:
            rc = p.wait(max(0.01, t0 + 2.5 - time.monotonic()))
            res[p.name] = (rc, time.monotonic() - t0 if rc is not None else None)
    finally:
        idle.close()
    msgs = []
    bad = []
    for p in procs:
        rc, dt = res[p.name]
        msgs.append("%s rc %s in %s" % (p.name, rc, "%.0f ms" % (dt * 1000) if dt is not None
                                        else "> 2.5 s"))
        if rc != 0 or dt is None or dt > 2.0:
            bad.append(msgs[-1])
    check(not bad, "not a clean exit within 2 s: %s" % "; ".join(bad))
    return "; ".join(msgs)


# --------------------------------------------------------------------------------------
# 10. server speaks first

def server_speaks_first(env, samples=3):
    banner = b"220 revsock-test banner\r\n"
    ttfb = []
    for _ in range(samples):
        t0 = time.monotonic()
        s = connect(env.p_banner)
        try:
            s.settimeout(3.0)
            d = s.recv(len(banner))
            t = time.monotonic() - t0
            if len(d) < len(banner):
                d += recv_exact(s, len(banner) - len(d))
        except (OSError, EOFError) as e:
            raise TestFailure("no banner: %s" % e)
        finally:
            s.close()
        check(d == banner, "banner mismatch: %r" % d)
        ttfb.append(t)
    med = statistics.median(ttfb)
    info = "time to first byte %s ms (median %.1f)" % (
        "/".join("%.1f" % (x * 1000) for x in ttfb), med * 1000)
    if env.portal_impl == "revsock":
        check(med < 0.100, "revsock portal: " + info + " >= 100 ms")
    else:
        info += ", V2Ray portal: report only"
    return info


# --------------------------------------------------------------------------------------
# 9. config errors (revsock only, no peer)

def _revsock_cmd(opts, *args, timeout=5.0):
    try:
        p = subprocess.run([opts.revsock] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise TestFailure("`revsock %s` did not exit within %.0fs" % (" ".join(args), timeout)) \
            from e
    return p.returncode, p.stderr.decode("utf-8", "replace"), p.stdout.decode("utf-8", "replace")


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def config_check_reference(env):
    info = []
    for which in ("portal", "bridge"):
        path = reference_config_path(which)
        if path is None:
            path = env.write_config("ref-" + which, reference_config(which))
        rc, err, _ = _revsock_cmd(env.opts, "check", "-c", str(path))
        check(rc == 0, "check -c %s: exit %s: %s" % (path, rc, err.strip()[-300:]))
        info.append(which)
    gen = env.write_config("gen-portal", env.portal_config("revsock"))
    rc, err, _ = _revsock_cmd(env.opts, "check", "-c", str(gen))
    check(rc == 0, "check -c (generated test portal config): exit %s: %s" % (rc, err.strip()))
    return "reference %s and generated configs accepted" % "+".join(info)


def config_unknown_key(env):
    cases = []
    c = env.portal_config("revsock")
    c["inbounds"][1]["settings"]["frobnicate"] = 1
    cases.append((c, ["frobnicate", "inbounds", "settings"]))
    c = env.bridge_config("revsock")
    c["revsock"] = {"noSuchOption": 3}
    cases.append((c, ["noSuchOption", "revsock"]))
    c = env.portal_config("revsock")
    c["bogusTopLevel"] = {}
    cases.append((c, ["bogusTopLevel"]))
    out = []
    for i, (cfg, words) in enumerate(cases):
        p = env.write_config("unknown-key-%d" % i, cfg)
        rc, err, _ = _revsock_cmd(env.opts, "check", "-c", str(p))
        check(rc == 2, "check -c with unknown key %s: exit %s (want 2): %s"
              % (words[0], rc, err.strip()[-200:]))
        missing = [w for w in words if w not in err]
        check(not missing, "stderr does not name the JSON path (missing %s): %r"
              % (missing, err.strip()[-200:]))
        out.append(_lines(err)[-1] if _lines(err) else "")
    return " | ".join(out)


def config_port_in_use(env):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    try:
        env.tunnel_port = port
        c = env.portal_config("revsock")
        c["log"] = {"loglevel": "warning", "access": "none"}
        p = env.write_config("port-in-use", c)
        rc, err, _ = _revsock_cmd(env.opts, "run", "-c", str(p), "--datapath",
                                  env.opts.datapath, timeout=5.0)
    finally:
        ls.close()
    lines = _lines(err)
    check(rc == 2, "run with the tunnel port in use: exit %s (want 2): %s"
          % (rc, err.strip()[-300:]))
    check(lines, "no message on stderr")
    check(any(str(port) in ln or "in use" in ln.lower() for ln in lines),
          "no line names port %d or 'in use': %r" % (port, lines[-3:]))
    check(len(lines) <= 3, "%d stderr lines, want one clear line: %r" % (len(lines), lines))
    return lines[-1]


def config_unknown_outbound(env):
    c = env.portal_config("revsock")
    c["routing"]["rules"].append({"type": "field", "inboundTag": ["public-dead"],
                                  "outboundTag": "no-such-outbound"})
    p = env.write_config("unknown-outbound", c)
    rc, err, _ = _revsock_cmd(env.opts, "check", "-c", str(p))
    check(rc == 2, "check -c with unknown outbound tag: exit %s (want 2): %s"
          % (rc, err.strip()[-200:]))
    rc2, err2, _ = _revsock_cmd(env.opts, "run", "-c", str(p), "--datapath", env.opts.datapath,
                                timeout=5.0)
    check(rc2 == 2, "run with unknown outbound tag: exit %s (want 2): %s"
          % (rc2, err2.strip()[-200:]))
    check("no-such-outbound" in err2 or "unknown" in err2.lower(),
          "run: stderr does not name the tag: %r" % err2.strip()[-200:])
    return _lines(err2)[-1] if _lines(err2) else ""


# --------------------------------------------------------------------------------------
# registry: (name, function, needs running portal+bridge, revsock extra settings)

PAIR_SCENARIOS = [
    ("tcp_echo", tcp_echo, None),
    ("tcp_bulk", tcp_bulk, None),
    ("udp_echo", udp_echo, None),
    ("refused_target", refused_target, None),
    ("many_sessions_drain", many_sessions_drain, None),
    ("bridge_restart", bridge_restart, None),
    ("user_stops_reading", user_stops_reading, {"sessionStallTimeout": STALL_S}),
    ("service_stops_reading", service_stops_reading, {"sessionStallTimeout": STALL_S}),
    ("sigterm", sigterm, None),
    ("server_speaks_first", server_speaks_first, None),
]

# scenarios that skip before starting any process (saves time)
PRE_SKIP = {
    "bridge_restart": lambda pairing: (
        "expected: a V2Ray portal keeps picking the dead tunnel for up to 30 s after a "
        "bridge restart (V2Ray quirk, spec §2.3)" if Env_portal_impl(pairing) == "v2ray"
        else None),
    "user_stops_reading": lambda pairing: SPEC_17 if pairing != "revsock-revsock" else None,
    "service_stops_reading": lambda pairing: SPEC_17 if pairing != "revsock-revsock" else None,
}


def Env_portal_impl(pairing):
    from lib import PAIRINGS
    return PAIRINGS[pairing][0]


CONFIG_SCENARIOS = [
    ("config_check_reference", config_check_reference),
    ("config_unknown_key", config_unknown_key),
    ("config_port_in_use", config_port_in_use),
    ("config_unknown_outbound", config_unknown_outbound),
]
