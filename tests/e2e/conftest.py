"""Fixtures for the SDK end-to-end tests: the real mock-gemini and gemini-proxy binaries on
loopback, with a key pool holding good, rate-limited and invalid keys."""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROXY_BIN = os.environ.get("GEMINI_PROXY_BIN", str(ROOT / "target/debug/gemini-proxy"))
MOCK_BIN = os.environ.get("MOCK_GEMINI_BIN", str(ROOT / "target/debug/mock-gemini"))

TOKEN = "gp-e2e-token-0123456789"
ADMIN_TOKEN = "admin-e2e-token-0123456789"
GOOD = ["AIzaE2E-GOOD-1", "AIzaE2E-GOOD-2"]
LIMITED = "AIzaE2E-LIMITED"
INVALID = "AIzaE2E-INVALID"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Output:
    """Collects a process's output lines on a thread, so pipes never fill up."""

    def __init__(self, stream):
        self.lines = []
        self._t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._t.start()

    def _pump(self, stream):
        for line in iter(stream.readline, ""):
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)


class Mock:
    def __init__(self):
        self.proc = subprocess.Popen([MOCK_BIN, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().strip()  # "listening on 127.0.0.1:PORT": the readiness signal
        assert first.startswith("listening on "), first
        self.base = "http://" + first.removeprefix("listening on ")

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + "/__mock" + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def set_key(self, key, **behaviour):
        self.control("PUT", "/keys/" + key, behaviour)

    def requests(self):
        return self.control("GET", "/requests")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Proxy:
    def __init__(self, upstream, keys):
        self.port = free_port()
        self.admin_port = free_port()
        self.dir = tempfile.TemporaryDirectory()
        cfg = Path(self.dir.name) / "proxy.toml"
        key_list = ", ".join(json.dumps(k) for k in keys)
        cfg.write_text(f"""
[server]
listen = "127.0.0.1:{self.port}"
threads = 2

[upstream]
base_url = "{upstream}"
retry_backoff = "10ms"

[key_health]
probe_interval = "1h"

[admin]
listen = "127.0.0.1:{self.admin_port}"
token = "{ADMIN_TOKEN}"

[[pools]]
name = "default"
keys = [{key_list}]

[[clients]]
name = "e2e"
token = "{TOKEN}"
""")
        self.proc = subprocess.Popen([PROXY_BIN, "run", "-c", str(cfg), "--data-dir", str(Path(self.dir.name) / "data")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout = Output(self.proc.stdout)
        self.stderr = Output(self.proc.stderr)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("gemini-proxy exited: " + self.stderr.text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.admin_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("gemini-proxy did not start: " + self.stderr.text())
                time.sleep(0.02)
        self.base = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"

    def access_log(self, at_least=0, within=10.0):
        """Access-log records; waits (bounded) until there are at least `at_least`."""
        deadline = time.monotonic() + within
        while True:
            records = [json.loads(l) for l in self.stdout.lines if l.strip()]
            if len(records) >= at_least or time.monotonic() > deadline:
                return records
            time.sleep(0.02)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)


@pytest.fixture
def mock():
    m = Mock()
    m.set_key(LIMITED, mode="rate_limited", retry_delay="30s")
    m.set_key(INVALID, mode="invalid")
    yield m
    m.stop()


@pytest.fixture
def proxy(mock):
    # Bad keys first, so that round robin meets them early.
    p = Proxy(mock.base, [LIMITED, INVALID] + GOOD)
    yield p
    p.stop()
