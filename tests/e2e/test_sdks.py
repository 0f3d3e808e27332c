"""The official Python SDKs (google-genai, openai) used unchanged through the proxy, in front of
a pool that holds good, rate-limited and invalid keys. Every call must succeed, the bad keys
must be skipped, and no proxy token may reach the upstream."""

import os
import tempfile

import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from openai import OpenAI

from conftest import GOOD, INVALID, LIMITED, TOKEN


def genai_client(proxy, api_version=None):
    opts = types.HttpOptions(base_url=proxy.base, api_version=api_version) if api_version else types.HttpOptions(base_url=proxy.base)
    return genai.Client(api_key=TOKEN, http_options=opts)


def openai_client(proxy, token=TOKEN):
    return OpenAI(api_key=token, base_url=proxy.base + "/v1beta/openai/", max_retries=0)


def assert_no_token_upstream(mock):
    for r in mock.requests():
        assert TOKEN not in str(r), f"the proxy token reached the upstream: {r}"
        assert r["key"] in (None, LIMITED, INVALID, *GOOD), r


@pytest.mark.parametrize("api_version", [None, "v1beta"])
def test_genai_generate_stream_count_embed_list(proxy, mock, api_version):
    client = genai_client(proxy, api_version)

    r = client.models.generate_content(model="gemini-2.5-flash", contents="Say hi")
    assert r.text
    assert r.usage_metadata.total_token_count > 0

    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Stream please"))
    assert len(chunks) >= 2
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert "".join(c.text or "" for c in chunks)

    assert client.models.count_tokens(model="gemini-2.5-flash", contents="abcdefgh").total_tokens > 0

    e = client.models.embed_content(model="gemini-embedding-001", contents=["one", "two"])
    assert len(e.embeddings) == 2 and len(e.embeddings[0].values) > 0

    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names

    # The bad keys were met and skipped: each was tried once for generate, then benched.
    log = proxy.access_log(at_least=5)
    outcomes = [a["outcome"] for rec in log for a in rec["attempts"]]
    assert "rate_limited" in outcomes and "key_disabled" in outcomes, outcomes
    assert all(rec["status"] == 200 for rec in log), [(rec["path"], rec["status"]) for rec in log]
    gen = [rec for rec in log if rec["path"].endswith(":generateContent")][0]
    assert gen["tokens_in"] > 0 and gen["tokens_out"] > 0
    expected_version = api_version or "v1"
    assert gen["path"].startswith(f"/{expected_version}/"), gen["path"]
    assert_no_token_upstream(mock)


def test_genai_file_upload_then_use(proxy, mock):
    # A file lives in the project of the key that uploaded it, and round robin may hand the
    # upload to the rate-limited key: limit it on another model here, so that the generate call
    # below (which must use the file's key) can succeed. tests/proxy/uploads.rs covers a file
    # whose key is rate limited.
    mock.set_key(LIMITED, mode="rate_limited", retry_delay="30s", models=["gemini-2.5-pro"])
    client = genai_client(proxy)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("notes for the model\n" * 100)
        path = f.name
    try:
        up = client.files.upload(file=path, config=types.UploadFileConfig(display_name="notes", mime_type="text/plain"))
    finally:
        os.unlink(path)
    assert up.name.startswith("files/")
    assert up.size_bytes == 2000
    got = client.files.get(name=up.name)
    assert got.display_name == "notes"
    r = client.models.generate_content(model="gemini-2.5-flash", contents=[types.Part.from_uri(file_uri=up.uri, mime_type="text/plain"), "Summarise"])
    assert r.text

    # The SDK sent the chunks to the URL the proxy handed out; every upload request, the file
    # lookup and the generate call naming the file used the one key that owns the file.
    uploads = [r for r in mock.requests() if r["path"].startswith("/upload/")]
    starts = [r for r in uploads if "upload_id" not in (r["query"] or "")]
    chunks = [r for r in uploads if "upload_id" in (r["query"] or "")]
    assert chunks, uploads
    owner = chunks[0]["key"]
    assert owner in GOOD or owner == LIMITED, owner
    # The start may have been retried past a refused key; the one that succeeded is the owner.
    assert starts[-1]["key"] == owner
    assert all(r["key"] == owner for r in chunks)
    later = [r for r in mock.requests() if up.name.split("/")[1] in r["path"] or (r["path"].endswith(":generateContent"))]
    assert later and all(r["key"] == owner for r in later), [(r["path"], r["key"]) for r in later]
    assert_no_token_upstream(mock)


def test_genai_errors_are_gemini_shaped(proxy):
    bad = genai.Client(api_key="gp-wrong", http_options=types.HttpOptions(base_url=proxy.base))
    with pytest.raises(genai_errors.ClientError) as err:
        bad.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert err.value.code == 401
    assert err.value.status == "UNAUTHENTICATED"

    good = genai_client(proxy)  # kept in a variable: the SDK closes a client when it is collected
    with pytest.raises(genai_errors.ClientError) as err:
        good.models.generate_content(model="no-such-model", contents="x")
    assert err.value.code == 404


def test_openai_chat_stream_embeddings_models(proxy, mock):
    client = openai_client(proxy)
    c = client.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "Hello"}])
    assert c.choices[0].message.content
    assert c.usage.total_tokens > 0

    pieces, usage = [], None
    for chunk in client.chat.completions.create(model="gemini-2.5-flash", stream=True, stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "Hello"}]):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        usage = chunk.usage or usage
    assert len(pieces) >= 2 and "".join(pieces)
    assert usage and usage.completion_tokens > 0

    e = client.embeddings.create(model="gemini-embedding-001", input=["a", "b"])
    assert len(e.data) == 2

    assert "models/gemini-2.5-flash" in [m.id for m in client.models.list()]

    log = proxy.access_log(at_least=4)
    chat = [rec for rec in log if rec["path"].endswith("chat/completions")]
    assert all(rec["status"] == 200 for rec in log)
    assert chat and chat[-1]["model"] == "gemini-2.5-flash" and chat[-1]["tokens_out"] > 0
    for r in mock.requests():
        if "/openai/" in r["path"]:
            assert r["headers"].get("authorization", "").removeprefix("Bearer ") in (*GOOD, LIMITED, INVALID)
    assert_no_token_upstream(mock)


def test_openai_sees_auth_errors_and_retry_after(proxy, mock):
    with pytest.raises(openai.AuthenticationError) as err:
        openai_client(proxy, token="gp-wrong").models.list()
    # The SDK's exception says why, in the proxy's words (it cannot read an error array).
    assert "proxy token" in str(err.value), str(err.value)
    assert err.value.type == "UNAUTHENTICATED"

    # With every good key rate limited too, the client gets a 429 with Retry-After, which the
    # openai SDK honours for its own retries (Gemini itself never sends one).
    for k in GOOD:
        mock.set_key(k, mode="rate_limited", retry_delay="20s")
    with pytest.raises(openai.RateLimitError) as err:
        openai_client(proxy).chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
    retry_after = int(err.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 30, retry_after
    # Now every key is known to be cooling: the proxy answers itself, and says so.
    with pytest.raises(openai.RateLimitError) as err:
        openai_client(proxy).chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "x"}])
    assert "rate limited" in str(err.value), str(err.value)
