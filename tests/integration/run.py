#!/usr/bin/env python3
"""revsock integration test runner (Python 3 standard library only).

    python3 tests/integration/run.py [FILTER]

Env: REVSOCK_TEST_FILTER (substring of test names; argv[1] wins), REVSOCK_TEST_MIB (bulk
size, default 64), REVSOCK_DATAPATH (default userspace), REVSOCK_BIN (default
build/revsock), REVSOCK_PAIRS (default revsock-revsock,v2ray-bridge,v2ray-portal; also
v2ray-v2ray), REVSOCK_TEST_KEEP=1 keeps every temp dir (failed tests always keep theirs).
"""

import os
import re
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lib  # noqa: E402
import scenarios  # noqa: E402
import scenarios_stress  # noqa: E402
from lib import PAIRINGS, Env, Options, TestFailure, TestSkip  # noqa: E402

DEFAULT_PAIRS = "revsock-revsock,v2ray-bridge,v2ray-portal"
TEST_TIMEOUT = 150  # hard per-test watchdog (seconds), plus 2 s per bulk MiB


class _Watchdog(Exception):
    pass


def _alarm(signum, frame):
    raise _Watchdog("test exceeded the per-test watchdog")


def kernel_engine_missing(opts):
    """The probe's reason when this kernel cannot run the kernel engine, else None
    (`revsock probe` loads the programs, as `run --datapath sockmap` would)."""
    try:
        out = subprocess.run([opts.revsock, "probe"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=30).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        return "revsock probe failed: %s" % e
    m = re.search(r"kernel engine unavailable: (.*)\)", out)
    return m.group(1) if m else None


def main(argv):
    opts = Options()
    flt = argv[1] if len(argv) > 1 else os.environ.get("REVSOCK_TEST_FILTER", "")
    pairs = [p.strip() for p in os.environ.get("REVSOCK_PAIRS", DEFAULT_PAIRS).split(",")
             if p.strip()]
    unknown = [p for p in pairs if p not in PAIRINGS]
    if unknown:
        print("unknown pairing(s) %s; known: %s" % (unknown, ", ".join(PAIRINGS)))
        return 2
    have_revsock = os.access(opts.revsock, os.X_OK)
    have_v2ray = os.access(opts.v2ray, os.X_OK)

    no_engine = kernel_engine_missing(opts) if opts.datapath == "sockmap" else None
    tests = []  # (name, pairing or None, fn, revsock_extra, pre-skip reason, needs_start)
    for pairing in pairs:
        impls = PAIRINGS[pairing]
        for mod in (scenarios, scenarios_stress):
            for name, fn, extra in mod.PAIR_SCENARIOS:
                reason = None if opts.noskip else mod.PRE_SKIP.get(name, lambda p: None)(pairing)
                tests.append(("%s/%s" % (pairing, name), pairing, fn, extra, reason, True))
        del impls
    if any("revsock" in PAIRINGS[p] for p in pairs):
        for name, fn in scenarios.CONFIG_SCENARIOS:
            tests.append(("revsock/%s" % name, "revsock-revsock", fn, None, None, False))
        # fake-peer scenarios (scenarios_peer.py): they start their own processes
        try:
            import scenarios_peer
        except ImportError:
            scenarios_peer = None
        for name, fn in getattr(scenarios_peer, "PEER_SCENARIOS", []):
            tests.append(("revsock/%s" % name, "revsock-revsock", fn, None, None, False))

    signal.signal(signal.SIGALRM, _alarm)
    npass = nfail = nskip = 0
    t_all = time.monotonic()
    for name, pairing, fn, extra, reason, needs_start in tests:
        if flt and flt not in name:
            continue
        impls = PAIRINGS[pairing]
        if reason is None and no_engine and "revsock" in impls:
            reason = "datapath sockmap: %s" % no_engine
        if reason is None and "revsock" in impls and not have_revsock:
            print("FAIL %s: revsock binary not found at %s" % (name, opts.revsock), flush=True)
            nfail += 1
            continue
        if reason is None and needs_start and "v2ray" in impls and not have_v2ray:
            reason = "v2ray not installed (%s)" % opts.v2ray
        if reason is not None:
            print("SKIP %s: %s" % (name, reason), flush=True)
            nskip += 1
            continue
        t0 = time.monotonic()
        env = None
        failed = True
        status, msg, detail = "FAIL", "", []
        signal.alarm(TEST_TIMEOUT + 2 * opts.mib)
        try:
            env = Env(opts, pairing, name, revsock_extra=extra)
            if needs_start:
                setup = getattr(fn, "setup", None)  # e.g. extra service inbounds
                if setup is not None:
                    setup(env)
                env.start()
            info = fn(env)
            # every byte-exact test also proves the kernel path never stalled
            fired = env.watchdog_lines()
            if fired:
                raise TestFailure("kernel-path watchdog fired (%d lines): %s" % (len(fired), fired[0]))
            status, msg = "PASS", info or ""
            failed = False
        except TestSkip as e:
            status, msg = "SKIP", str(e)
            failed = False
        except TestFailure as e:
            msg = str(e)
        except _Watchdog as e:
            msg = str(e)
        except Exception as e:  # noqa: BLE001 - a harness error is a failure too
            msg = "%s: %s" % (type(e).__name__, e)
            detail = ["    " + ln for ln in traceback.format_exc().splitlines()[-6:]]
        finally:
            signal.alarm(0)
            if env is not None:
                if failed:
                    detail += env.tails()
                    detail.append("  (logs and configs kept in %s)" % env.tmp)
                try:
                    env.close(failed)
                except Exception as e:  # noqa: BLE001
                    detail.append("  cleanup error: %s" % e)
        dt = time.monotonic() - t0
        if status == "PASS":
            npass += 1
            print("PASS %s (%.1fs)%s" % (name, dt, " [%s]" % msg if msg else ""), flush=True)
        elif status == "SKIP":
            nskip += 1
            print("SKIP %s: %s" % (name, msg), flush=True)
        else:
            nfail += 1
            print("FAIL %s: %s (%.1fs)" % (name, msg, dt), flush=True)
            for ln in detail:
                print(ln, flush=True)
    lib.kill_all_started()
    sys.stderr.write("integration: total %.1fs\n" % (time.monotonic() - t_all))
    print("integration: %d passed, %d failed, %d skipped" % (npass, nfail, nskip), flush=True)
    return 1 if nfail else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    finally:
        lib.kill_all_started()
