#!/usr/bin/env python3
"""Small purpose-built clients for the gemini-proxy benchmark (Python standard library only).

bench/run starts them as subprocesses pinned to the load CPU:

  clients.py sse --target NAME=PORT=KEY ... --samples N [--chunks 2 --delay-ms 10]
      Time to the first SSE `data:` event of streamGenerateContent?alt=sse, and to the end of
      the stream, for several targets. One keep-alive connection per target; the samples are
      interleaved across targets (direct, nginx, gemini-proxy, direct, ...) so that machine
      noise hits all of them alike. Prints one JSON object.

  clients.py hold --port P --conns N [--parallel 200] [--src-ips 127.0.0.2,...]
      Opens N keep-alive connections, makes one generateContent request on each (so every one
      is a real HTTP keep-alive connection the server has served), then holds them all open.
      Prints "READY {json}" once they are open and waits until stdin closes (or --hold-max
      seconds pass), then closes them. Only loopback addresses are used.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_PATH = "/v1beta/models/gemini-2.5-flash"


def request_body():
    with open(os.path.join(HERE, "upstream", "request.json"), "rb") as f:
        return f.read().strip()


def build_request(method, path, key, body, extra=()):
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: gemini-proxy-bench",
            "Content-Type: application/json", f"x-goog-api-key: {key}", f"Content-Length: {len(body)}"]
    head.extend(extra)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------------------------
# Minimal HTTP/1.1 response reader (Content-Length or chunked), incremental.

class ResponseReader:
    """Feeds raw bytes; knows when the head, the first SSE event and the end have arrived."""

    def __init__(self):
        self.buf = b""
        self.status = None
        self.head_done = False
        self.length = None
        self.chunked = False
        self.body_seen = b""  # undecoded body bytes so far (only the start is kept)
        self.first_data = False
        self.done = False
        self._chunk_state = None  # remaining bytes of the current chunk, or None for "size line"
        self._pos = 0
        self._body_bytes = 0

    def feed(self, data):
        self.buf += data
        if not self.head_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            self.status = int(head[0].split(" ")[1])
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip()
                if name == "content-length":
                    self.length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self.chunked = True
            self.head_done = True
            self.buf = self.buf[end + 4:]
        if not self.first_data and b"data:" in self.buf[:4096]:
            self.first_data = True
        if self.chunked:
            self._consume_chunks()
        elif self.length is not None:
            if len(self.buf) >= self.length:
                self.done = True
        else:
            # Neither: a body-less answer such as 204, or close-delimited (not used here).
            self.done = self.status in (204, 304)

    def _consume_chunks(self):
        while True:
            if self._chunk_state is None:
                nl = self.buf.find(b"\r\n", self._pos)
                if nl < 0:
                    return
                size = int(self.buf[self._pos:nl].split(b";")[0], 16)
                self._pos = nl + 2
                if size == 0:
                    # Last chunk; no trailers are expected, only the final CRLF.
                    if len(self.buf) >= self._pos + 2:
                        self.done = True
                    else:
                        self._chunk_state = -1
                    return
                self._chunk_state = size
            elif self._chunk_state == -1:
                if len(self.buf) >= self._pos + 2:
                    self.done = True
                return
            else:
                need = self._chunk_state + 2
                if len(self.buf) - self._pos < need:
                    return
                self._pos += need
                self._chunk_state = None


def one_exchange(sock, request, timeout):
    """Sends `request` on `sock` and reads the answer; returns (status, t_head, t_first, t_end)
    in nanoseconds from just before the send."""
    r = ResponseReader()
    sock.settimeout(timeout)
    t0 = time.perf_counter_ns()
    sock.sendall(request)
    t_head = t_first = None
    while not r.done:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed before the end of the response")
        now = time.perf_counter_ns()
        r.feed(data)
        if t_head is None and r.head_done:
            t_head = now - t0
        if t_first is None and r.first_data:
            t_first = now - t0
    t_end = time.perf_counter_ns() - t0
    return r.status, t_head, t_first, t_end


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarize_us(values_ns):
    v = sorted(x / 1000.0 for x in values_ns)
    return {
        "n": len(v),
        "min": v[0] if v else None,
        "p50": percentile(v, 50),
        "p90": percentile(v, 90),
        "p99": percentile(v, 99),
        "max": v[-1] if v else None,
        "mean": sum(v) / len(v) if v else None,
    }


def cmd_sse(args):
    body = request_body()
    extra = [f"x-mock-chunks: {args.chunks}", f"x-mock-chunk-delay-ms: {args.delay_ms}"]
    path = f"{MODEL_PATH}:streamGenerateContent?alt=sse"
    targets = []
    for spec in args.target:
        name, port, key = spec.split("=", 2)
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        targets.append({"name": name, "port": int(port), "sock": s,
                        "req": build_request("POST", path, key, body, extra),
                        "first": [], "end": [], "head": [], "errors": 0, "statuses": {}})
    # Warm-up: a few exchanges per target, not recorded.
    for t in targets:
        for _ in range(args.warmup):
            one_exchange(t["sock"], t["req"], args.timeout)
    deadline = time.monotonic() + args.max_seconds
    for i in range(args.samples):
        if time.monotonic() > deadline:
            break
        order = targets[i % len(targets):] + targets[:i % len(targets)]
        for t in order:
            try:
                status, th, tf, te = one_exchange(t["sock"], t["req"], args.timeout)
            except (OSError, ValueError, ConnectionError):
                t["errors"] += 1
                try:
                    t["sock"].close()
                    t["sock"] = socket.create_connection(("127.0.0.1", t["port"]), timeout=5)
                    t["sock"].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
                continue
            t["statuses"][str(status)] = t["statuses"].get(str(status), 0) + 1
            if status != 200 or tf is None:
                t["errors"] += 1
                continue
            t["head"].append(th)
            t["first"].append(tf)
            t["end"].append(te)
    out = {"chunks": args.chunks, "delay_ms": args.delay_ms, "targets": {}}
    for t in targets:
        t["sock"].close()
        out["targets"][t["name"]] = {
            "errors": t["errors"],
            "statuses": t["statuses"],
            "head_us": summarize_us(t["head"]),
            "first_event_us": summarize_us(t["first"]),
            "end_us": summarize_us(t["end"]),
            "first_event_samples_us": [round(x / 1000.0, 1) for x in t["first"]],
        }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


def cmd_hold(args):
    limit = raise_nofile(args.conns + 1024)
    if limit < args.conns + 64:
        print(f"hold: cannot raise the open-files limit above {limit}", file=sys.stderr)
    body = request_body()
    req = build_request("POST", f"{MODEL_PATH}:generateContent", args.key, body)
    src_ips = [ip for ip in args.src_ips.split(",") if ip] or ["127.0.0.1"]
    for ip in src_ips + [args.host]:
        if not ip.startswith("127."):
            raise SystemExit("hold: only loopback addresses are allowed")
    sel = selectors.DefaultSelector()
    held = []
    errors = {}
    statuses = {}
    started = 0
    inflight = 0
    t0 = time.monotonic()
    deadline = t0 + args.open_timeout

    def fail(kind):
        errors[kind] = errors.get(kind, 0) + 1

    while (started < args.conns or inflight) and time.monotonic() < deadline:
        while started < args.conns and inflight < args.parallel:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((src_ips[started % len(src_ips)], 0))
                s.setblocking(False)
                rc = s.connect_ex((args.host, args.port))
            except OSError as e:
                s.close()
                fail(errno.errorcode.get(e.errno, str(e.errno)))
                started += 1
                if e.errno == errno.EMFILE:
                    deadline = 0
                continue
            started += 1
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                fail(errno.errorcode.get(rc, str(rc)))
                continue
            state = {"sock": s, "sent": False, "reader": ResponseReader()}
            sel.register(s, selectors.EVENT_WRITE, state)
            inflight += 1
        for key, ev in sel.select(timeout=0.5):
            st = key.data
            s = st["sock"]
            try:
                if not st["sent"]:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    s.send(req)  # small: goes out in one send on a fresh socket
                    st["sent"] = True
                    sel.modify(s, selectors.EVENT_READ, st)
                    continue
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("closed")
                st["reader"].feed(data)
                if st["reader"].done:
                    sel.unregister(s)
                    inflight -= 1
                    code = str(st["reader"].status)
                    statuses[code] = statuses.get(code, 0) + 1
                    held.append(s)
            except (OSError, ConnectionError, ValueError) as e:
                sel.unregister(s)
                s.close()
                inflight -= 1
                fail(type(e).__name__ if not isinstance(e, OSError) or not e.errno
                     else errno.errorcode.get(e.errno, str(e.errno)))
    opened_s = time.monotonic() - t0
    # Anything still pending counts as a failure.
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()
        fail("timeout")
    # Check the held connections are still open (the server did not close them).
    time.sleep(args.settle)
    alive = 0
    for s in held:
        try:
            s.setblocking(False)
            data = s.recv(1, socket.MSG_PEEK)
            if data == b"":
                continue  # closed by the server
            alive += 1  # unexpected data, still open
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    info = {"requested": args.conns, "held": len(held), "alive_after_settle": alive,
            "statuses": statuses, "errors": errors, "open_seconds": round(opened_s, 3),
            "nofile_limit": limit}
    sys.stdout.write("READY " + json.dumps(info) + "\n")
    sys.stdout.flush()
    end = time.monotonic() + args.hold_max
    sel2 = selectors.DefaultSelector()
    sel2.register(sys.stdin, selectors.EVENT_READ)
    while time.monotonic() < end:
        if sel2.select(timeout=0.5):
            if not sys.stdin.readline():
                break
    for s in held:
        s.close()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("sse")
    a.add_argument("--target", action="append", required=True, help="NAME=PORT=KEY")
    a.add_argument("--samples", type=int, default=500)
    a.add_argument("--warmup", type=int, default=20)
    a.add_argument("--chunks", type=int, default=2)
    a.add_argument("--delay-ms", type=int, default=10)
    a.add_argument("--timeout", type=float, default=5.0)
    a.add_argument("--max-seconds", type=float, default=120.0)
    b = sub.add_parser("hold")
    b.add_argument("--host", default="127.0.0.1")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--key", required=True)
    b.add_argument("--conns", type=int, default=10000)
    b.add_argument("--parallel", type=int, default=200)
    b.add_argument("--src-ips", default="127.0.0.1")
    b.add_argument("--open-timeout", type=float, default=120.0)
    b.add_argument("--settle", type=float, default=1.0)
    b.add_argument("--hold-max", type=float, default=60.0)
    args = ap.parse_args()
    return cmd_sse(args) if args.cmd == "sse" else cmd_hold(args)


if __name__ == "__main__":
    sys.exit(main())
