#!/usr/bin/env python3
"""Drive a running mock-gemini directly with the official Python SDKs (google-genai, openai).

Usage: python sdk_check.py http://127.0.0.1:PORT

The mock must run with `--upload-origin self` (or its own URL): the google-genai SDK sends
upload chunks to exactly the X-Goog-Upload-URL it gets back. Exits non-zero on the first
failure and prints what the SDKs sent (paths, key sources, notable headers).
"""

import json
import os
import sys
import tempfile
import urllib.request

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
import openai
from openai import OpenAI

KEY = "AIzaTEST"


def control(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + "/__mock" + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def recorded(base):
    return control(base, "GET", "/requests")


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok   {what}")


def genai_checks(base, api_version):
    label = f"google-genai[{api_version or 'default'}]"
    opts = types.HttpOptions(base_url=base, api_version=api_version) if api_version else types.HttpOptions(base_url=base)
    client = genai.Client(api_key=KEY, http_options=opts)

    r = client.models.generate_content(model="gemini-2.5-flash", contents="Say hi")
    check(r.text and "mock answer" in r.text, f"{label} generate_content -> {r.text!r}")
    check(r.usage_metadata.total_token_count == r.usage_metadata.prompt_token_count + r.usage_metadata.candidates_token_count,
          f"{label} usage_metadata adds up")

    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Stream please"))
    check(len(chunks) == 3 and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP,
          f"{label} generate_content_stream -> {len(chunks)} chunks, last finish STOP")

    ct = client.models.count_tokens(model="gemini-2.5-flash", contents="abcdefgh")
    check(ct.total_tokens == 2, f"{label} count_tokens -> {ct.total_tokens}")

    e = client.models.embed_content(model="gemini-embedding-001", contents=["one", "two"],
                                    config=types.EmbedContentConfig(output_dimensionality=8))
    check(len(e.embeddings) == 2 and len(e.embeddings[0].values) == 8, f"{label} embed_content -> 2 x 8 values")

    names = [m.name for m in client.models.list()]
    check("models/gemini-2.5-flash" in names, f"{label} models.list -> {len(names)} models")

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("hello upload\n")
        path = f.name
    try:
        up = client.files.upload(file=path, config=types.UploadFileConfig(display_name="greeting", mime_type="text/plain"))
    finally:
        os.unlink(path)
    check(up.name.startswith("files/") and up.size_bytes == 13 and up.state == types.FileState.ACTIVE,
          f"{label} files.upload -> {up.name} ({up.size_bytes} bytes, {up.state})")
    got = client.files.get(name=up.name)
    check(got.name == up.name and got.display_name == "greeting", f"{label} files.get -> {got.display_name}")

    r = client.models.generate_content(
        model="gemini-2.5-flash",
        contents=[types.Part.from_uri(file_uri=up.uri, mime_type="text/plain"), "Summarise"])
    check(bool(r.text), f"{label} generate_content with the uploaded file")

    # Errors: a rate-limited key surfaces as a 429 ClientError carrying Google's details.
    control(base, "PUT", "/keys/AIzaLIMITED", {"mode": "rate_limited", "retry_delay": "7s"})
    limited = genai.Client(api_key="AIzaLIMITED", http_options=opts)
    try:
        limited.models.generate_content(model="gemini-2.5-flash", contents="x")
        check(False, f"{label} rate-limited key raises")
    except genai_errors.ClientError as err:
        delay = [d.get("retryDelay") for d in err.details["error"]["details"] if d.get("retryDelay")]
        check(err.code == 429 and delay == ["7s"], f"{label} rate-limited -> ClientError {err.code}, retryDelay {delay}")

    # A stream that dies mid-way must raise, not end quietly.
    control(base, "PUT", "/keys/AIzaDIES", {"mode": "die_midstream", "after_events": 1})
    dying = genai.Client(api_key="AIzaDIES", http_options=opts)
    got_chunks = 0
    try:
        for _ in dying.models.generate_content_stream(model="gemini-2.5-flash", contents="x"):
            got_chunks += 1
        check(False, f"{label} die_midstream raises")
    except Exception as err:  # the SDK surfaces the transport's error (httpx RemoteProtocolError)
        check(got_chunks == 1, f"{label} die_midstream -> {got_chunks} chunk then {type(err).__name__}")


def openai_checks(base):
    client = OpenAI(api_key=KEY, base_url=base + "/v1beta/openai/", max_retries=0)
    c = client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "Hello"}])
    check(c.choices[0].message.content and c.choices[0].finish_reason == "stop" and c.usage.total_tokens > 0,
          f"openai chat -> {c.choices[0].message.content!r}")

    pieces, finish, last_usage = [], None, None
    for chunk in client.chat.completions.create(model="gemini-2.5-flash", stream=True,
                                                messages=[{"role": "user", "content": "Hello"}]):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        last_usage = chunk.usage or last_usage
    check(len(pieces) == 3 and finish == "stop" and last_usage.completion_tokens > 0,
          f"openai streamed chat -> {len(pieces)} chunks, finish {finish}, usage {last_usage.total_tokens}")

    e = client.embeddings.create(model="gemini-embedding-001", input=["a", "b"])
    check(len(e.data) == 2 and len(e.data[0].embedding) == 3072, f"openai embeddings -> 2 x {len(e.data[0].embedding)}")

    ids = [m.id for m in client.models.list()]
    check("models/gemini-2.5-flash" in ids, f"openai models.list -> {len(ids)} models")
    m = client.models.retrieve("gemini-2.5-flash")
    check(m.id == "models/gemini-2.5-flash", f"openai models.retrieve -> {m.id}")

    limited = OpenAI(api_key="AIzaLIMITED", base_url=base + "/v1beta/openai/", max_retries=0)
    try:
        limited.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
        check(False, "openai rate-limited key raises")
    except openai.RateLimitError as err:
        check(err.status_code == 429, f"openai rate-limited -> RateLimitError ({err.status_code})")
    bad = OpenAI(api_key="nope", base_url=base + "/v1beta/openai/", max_retries=0)
    control(base, "PUT", "/keys/nope", {"mode": "invalid"})
    try:
        bad.models.list()
        check(False, "openai invalid key raises")
    except openai.BadRequestError as err:
        check(err.status_code == 400, "openai invalid key -> BadRequestError (400)")


def summarise(base):
    print("\n--- what the SDKs sent ---")
    seen = {}
    for r in recorded(base):
        h = r["headers"]
        if "x-goog-api-key" in h:
            src = "x-goog-api-key"
        elif r["query"] and "key=" in r["query"]:
            src = "?key="
        elif "authorization" in h:
            src = "authorization"
        else:
            src = "none"
        client = h.get("user-agent", "").split(" ")[0]
        line = f'{r["method"]:6} {r["path"]}{"?" + r["query"] if r["query"] else ""}  key via {src}  ua {client}'
        seen.setdefault(line, 0)
        seen[line] += 1
    for line, n in seen.items():
        print(f"{n:3}x {line}")
    notable = set()
    for r in recorded(base):
        for name in r["headers"]:
            if name.startswith(("x-goog", "x-stainless", "x-upload")) or name in ("authorization", "accept-encoding"):
                notable.add(name)
    print("headers seen:", ", ".join(sorted(notable)))


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    base = sys.argv[1].rstrip("/")
    control(base, "POST", "/reset")
    print(f"google-genai {genai.__version__}, openai {openai.__version__}")
    genai_checks(base, None)
    genai_checks(base, "v1beta")
    openai_checks(base)
    summarise(base)
    print("\nALL SDK CHECKS PASSED")


if __name__ == "__main__":
    main()
