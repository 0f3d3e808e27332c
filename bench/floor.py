#!/usr/bin/env python3
"""What this machine adds to latency by itself, with no proxy in the way (standard library only).

    floor.py --proxy-cpu 0 --load-cpu 1 [--seconds 5]
    floor.py --watch-cpus 0,1 --seconds 7 [--period-ms 2]

The first form prints one JSON object with two measurements, for reading the latency a proxy
adds (below). The second runs only the timer, on each CPU given, beside a measurement window,
and prints their summaries by CPU: bench/run uses it to tell windows in which the machine
paused. At real-time priority the timer preempts everything else on its CPU at once, so a
proxy that is busy or stuck cannot make it late: only interrupts, code that cannot be
preempted, and the host not running that virtual CPU can.

- **Cross-CPU round trip**: a byte sent from the load CPU to a process on the proxy CPU and
  back over pipes, one every millisecond (so the proxy CPU goes idle in between, as it does at
  low request rates), against the same round trip with both ends on the load CPU. A request
  through a proxy on its own CPU crosses between CPUs twice, once each way; going direct it
  does not. On a virtual machine an idle virtual CPU is woken through the host, and that wake-up
  is part of every proxy's added latency.
- **Timer lateness**: one process pinned to each CPU sleeps to deadlines 1 ms apart (at real-time
  priority when allowed, so that nothing in the guest delays it) and records how late it wakes.
  Lateness of a millisecond or more is time the CPU was not running the guest at all, or ran
  something that could not be interrupted: any request in flight on that CPU waits as long.
"""

import argparse
import json
import os
import sys
import time

from clients import percentile  # bench/clients.py, beside this file


def percentiles(values_us):
    v = sorted(values_us)
    if not v:
        return None
    at = {p: round(percentile(v, q), 1) for p, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))}
    return {"n": len(v), **at, "max": round(v[-1], 1)}


def round_trips(near_cpu, far_cpu, count, gap_s):
    """Round-trip times (µs) of one byte to a process pinned on far_cpu and back."""
    to_far_r, to_far_w = os.pipe()
    back_r, back_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.sched_setaffinity(0, {far_cpu})
            while True:
                b = os.read(to_far_r, 1)
                if not b or b == b"q":
                    break
                os.write(back_w, b)
        finally:
            os._exit(0)
    os.close(to_far_r)
    os.close(back_w)
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {near_cpu})
    out = []
    try:
        for i in range(count + 20):
            t0 = time.perf_counter_ns()
            os.write(to_far_w, b"x")
            os.read(back_r, 1)
            if i >= 20:  # the first few warm both ends up
                out.append((time.perf_counter_ns() - t0) / 1000.0)
            time.sleep(gap_s)
    finally:
        os.write(to_far_w, b"q")
        os.waitpid(pid, 0)
        for fd in (to_far_w, back_r):
            os.close(fd)
        os.sched_setaffinity(0, old)
    return out


def timer_lateness(cpu, seconds, period_s):
    """Sleeps to deadlines period_s apart on `cpu` (this process moves there); a summary."""
    os.sched_setaffinity(0, {cpu})
    realtime = True
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
    except (PermissionError, OSError):
        realtime = False
    late_us = []
    period_ns = int(period_s * 1e9)
    t_end = time.monotonic_ns() + int(seconds * 1e9)
    due = time.monotonic_ns() + period_ns
    while due < t_end:
        wait = due - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        now = time.monotonic_ns()
        late_us.append((now - due) / 1000.0)
        due = max(due + period_ns, now)  # after a stall, carry on from now rather than catch up
    stalls = [x for x in late_us if x >= 1000]
    summary = {"cpu": cpu, "realtime": realtime, "wakeups": len(late_us), "late_us": percentiles(late_us),
               "stalls_1ms": len(stalls), "stalls_5ms": sum(1 for x in stalls if x >= 5000),
               "stalled_ms": round(sum(stalls) / 1000.0, 1), "seconds": seconds, "period_ms": period_s * 1000,
               "cpu_s": round(time.process_time(), 3)}
    return summary


def timer_lateness_on(cpus, seconds, period_s=0.001):
    """Runs timer_lateness on every CPU in `cpus` at the same time; their summaries by CPU."""
    children = []
    for cpu in cpus:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.write(w, json.dumps(timer_lateness(cpu, seconds, period_s)).encode())
            finally:
                os._exit(0)
        os.close(w)
        children.append((cpu, pid, r))
    out = {}
    for cpu, pid, r in children:
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        out[str(cpu)] = json.loads(data) if data else None
    return out


def added(cross, same):
    if not cross or not same:
        return None
    return {p: round(cross[p] - same[p], 1) for p in ("p50", "p99", "p99.9")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy-cpu", type=int)
    ap.add_argument("--load-cpu", type=int)
    ap.add_argument("--watch-cpus", help="only the timer, on these CPUs (a comma-separated list)")
    ap.add_argument("--period-ms", type=float, default=1.0, help="the timer's period")
    ap.add_argument("--seconds", type=float, default=5.0, help="for each of the two measurements")
    a = ap.parse_args()
    if a.watch_cpus:
        cpus = sorted({int(c) for c in a.watch_cpus.split(",")})
        print(json.dumps(timer_lateness_on(cpus, a.seconds, a.period_ms / 1000.0)))
        return
    if a.proxy_cpu is None or a.load_cpu is None:
        ap.error("--proxy-cpu and --load-cpu (or --watch-cpus)")
    gap = 0.001
    count = max(50, int(a.seconds / 2 / (gap + 0.0001)))  # the two round-trip runs share the time
    same = percentiles(round_trips(a.load_cpu, a.load_cpu, count, gap))
    cross = percentiles(round_trips(a.load_cpu, a.proxy_cpu, count, gap))
    stalls = timer_lateness_on(sorted({a.proxy_cpu, a.load_cpu}), a.seconds)
    json.dump({"round_trip_us": {"same_cpu": same, "cross_cpu": cross, "added": added(cross, same), "gap_ms": gap * 1000},
               "timer": stalls, "proxy_cpu": a.proxy_cpu, "load_cpu": a.load_cpu}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
