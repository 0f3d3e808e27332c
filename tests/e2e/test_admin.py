"""The admin API checked by independent tools: its OpenAPI document against the running server
(schemathesis), and /metrics through Prometheus' own text parser."""

import subprocess
import sys
import urllib.request
from pathlib import Path

from google import genai
from google.genai import types
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADMIN_TOKEN, TOKEN


def admin_get(proxy, path):
    req = urllib.request.Request(proxy.admin + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req) as r:
        return r.read().decode()


def test_metrics_parse_with_the_prometheus_parser(proxy):
    client = genai.Client(api_key=TOKEN, http_options=types.HttpOptions(base_url=proxy.base))
    for _ in range(3):
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    proxy.access_log(at_least=3)
    families = {f.name: f for f in text_string_to_metric_families(admin_get(proxy, "/metrics"))}
    # The parser strips _total from counter family names.
    for name in ["gemini_proxy_requests", "gemini_proxy_request_duration_seconds", "gemini_proxy_first_byte_seconds",
                 "gemini_proxy_upstream_attempts", "gemini_proxy_tokens", "gemini_proxy_inflight_requests",
                 "gemini_proxy_key_state", "gemini_proxy_keys", "gemini_proxy_build_info"]:
        assert name in families, f"{name} missing; have {sorted(families)}"
    ok = [s for s in families["gemini_proxy_requests"].samples if s.labels.get("status_class") == "2xx" and s.name.endswith("_total")]
    assert sum(s.value for s in ok) >= 3
    outcomes = {s.labels["outcome"] for s in families["gemini_proxy_upstream_attempts"].samples}
    assert {"ok", "rate_limited", "key_disabled"} <= outcomes, outcomes
    disabled = [s for s in families["gemini_proxy_key_state"].samples if s.labels["state"] == "disabled"]
    assert len(disabled) == 1
    # Drop counters exist at zero before any drop, so an alert on their increase can fire.
    dropped = {s.labels["sink"]: s.value for s in families["gemini_proxy_dropped_records"].samples if s.name.endswith("_total")}
    assert dropped == {"access_log": 0, "state_store": 0}, dropped
    text = admin_get(proxy, "/metrics")
    for secret in ["AIzaE2E", TOKEN, ADMIN_TOKEN]:
        assert secret not in text, f"{secret} in metrics"
    tokens = [s for s in families["gemini_proxy_tokens"].samples if s.labels["direction"] == "output"]
    assert sum(s.value for s in tokens) > 0


def test_openapi_document_matches_the_running_server(proxy, tmp_path):
    spec = tmp_path / "openapi.json"
    spec.write_text(admin_get(proxy, "/api/v1/openapi.json"))
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "run", str(spec), "--url", proxy.admin,
           "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
           "--phases", "examples,coverage,fuzzing", "--max-examples", "15", "--workers", "1",
           "--max-time", "30", "--suppress-health-check", "all", "--seed", "1",
           # /readyz answers 503 by design once fuzzing has disabled the keys (tests/proxy/admin.rs
           # covers it); everywhere else a 5xx is a bug.
           "--exclude-path", "/readyz"]
    # In the temp dir: schemathesis keeps a crash cache in the working directory.
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    report = tmp_path / "schemathesis.txt"
    report.write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"full report in {report}\n" + run.stdout[:12000] + run.stderr[-2000:]
