#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Self-test of the benchmark's checks: every loadgen workload must pass through
an honest relay and must FAIL through a relay that alters one byte (in either
direction) or drops one. Python 3 stdlib only; loopback; about 10 s.

    python3 tests/bench/selftest.py      (after `make all`)
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOADGEN = os.environ.get("BENCH_LOADGEN") or os.path.join(ROOT, "build", "tools", "loadgen")


class Relay:
    """127.0.0.1:ephemeral -> 127.0.0.1:target; mode: ok | flip-up | flip-down | drop-down.
    The fault hits byte `at` of each connection's stream in that direction."""

    def __init__(self, target, mode, at):
        self.target, self.mode, self.at = target, mode, at
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(512)
        self.port = self.ls.getsockname()[1]
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        self.ls.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.pump, args=(c, u, "up"), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, "down"), daemon=True).start()

    def pump(self, src, dst, direction):
        pos = 0
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                fault = self.mode.endswith(direction) and pos <= self.at < pos + len(b)
                if fault:
                    i = self.at - pos
                    if self.mode.startswith("flip"):
                        b = b[:i] + bytes([b[i] ^ 0x5A]) + b[i + 1:]
                    else:
                        b = b[:i] + b[i + 1:]
                pos += len(b) + (1 if fault and self.mode.startswith("drop") else 0)
                dst.sendall(b)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.stop = True
        self.ls.close()


def loadgen(args, stdin_line=False, timeout=30):
    if stdin_line:  # idle: answer its hold with a line at once
        p = subprocess.run([LOADGEN] + args, input=b"go\n", stdout=subprocess.PIPE, timeout=timeout)
    else:
        p = subprocess.run([LOADGEN] + args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)
    last = json.loads(p.stdout.decode().strip().splitlines()[-1])
    return p.returncode, last


def main():
    srv = subprocess.Popen([LOADGEN, "serve", "--max-seconds", "120"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    svc = json.loads(srv.stdout.readline())
    # (name, service, args, faults that must be caught, byte position)
    cases = [
        ("bulk up", "bulk", ["bulk", "--dir", "up", "--seconds", "0.3"], ["flip-up", "drop-up"], 300000),
        ("bulk down", "bulk", ["bulk", "--dir", "down", "--seconds", "0.3"], ["flip-down", "drop-down"], 300000),
        ("bulk up x3", "bulk", ["bulk", "--dir", "up", "--streams", "3", "--seconds", "0.3"], ["flip-up"], 200000),
        ("pingpong", "echo", ["pingpong", "--size", "64", "--count", "300", "--warmup", "10"],
         ["flip-up", "flip-down"], 3000),
        ("pingpong 1k", "echo", ["pingpong", "--size", "1024", "--count", "100", "--warmup", "10"],
         ["flip-down"], 30000),
        ("churn", "echo", ["churn", "--conns", "2", "--seconds", "0.3"], ["flip-up", "flip-down"], 5),
        ("ttfb", "banner", ["ttfb", "--count", "20"], ["flip-down"], 7),
        ("idle", "echo", ["idle", "--sessions", "40", "--open-seconds", "5", "--hold-max", "5"],
         ["flip-down", "flip-up"], 20),
    ]
    bad, lines = 0, []
    for name, service, args, faults, at in cases:
        for mode in ["ok"] + faults:
            r = Relay(svc[service], mode, at)
            try:
                rc, res = loadgen(args + ["--port", str(r.port)], stdin_line=(args[0] == "idle"))
            finally:
                r.close()
            want_ok = mode == "ok"
            good = (rc == 0 and res.get("ok")) if want_ok else (rc != 0 and not res.get("ok"))
            lines.append("%-5s %-12s %-10s rc=%d %s" % ("ok" if good else "WRONG", name, mode, rc,
                                                        res.get("error", "") if not want_ok else ""))
            bad += not good
    srv.stdin.close()
    srv.wait(10)
    err = srv.stderr.read().decode()
    # the service must have noticed the altered uploads itself
    if "wrong bytes" not in err:
        lines.append("WRONG service did not report the altered upload")
        bad += 1
    if bad or "-v" in sys.argv:
        print("\n".join(lines))
    print("bench selftest: %s (%d cases: honest relay passes; each altered or dropped byte is caught)" % (
        "PASS" if not bad else "%d FAILED" % bad, len(lines)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
