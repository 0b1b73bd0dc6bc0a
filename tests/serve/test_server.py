"""``rnnkit serve`` over real HTTP on loopback: streamed and whole completions equal ``generate()`` for their
seed, the official ``openai`` client works unchanged, scoring and classification equal the library's,
concurrent requests keep the batching guarantee, a disconnect stops its generation, every bad input gets
its status and OpenAI-shaped message while the server keeps serving, and a bounded load loses nothing."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time

import pytest

from live import running
from rnnkit.config import SampleConfig
from rnnkit.evaluate import evaluate_stream
from rnnkit.inference.predict import predict
from rnnkit.inference.sampling import generate
from rnnkit.runs import load, load_classifier
from rnnkit.serve.api import Limits

httpx = pytest.importorskip("httpx", reason="the server tests need httpx (the test extra)")


@pytest.fixture(scope="module")
def server(lm_run, classifier_run):
    with running([lm_run, classifier_run]) as (url, srv):
        yield url, srv


def sse(text: str) -> list:
    """The data of each server-sent event: parsed JSON chunks, and "[DONE]"."""
    out = []
    for event in text.split("\n\n"):
        if event.startswith("data: "):
            data = event[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def health(url):
    return httpx.get(f"{url}/healthz", timeout=5).json()


def test_streamed_completion_arrives_in_chunks_and_is_generate_for_its_seed(server, lm_run):
    url, _ = server
    lm = load(lm_run)
    body = {"model": "lm", "prompt": "ROMEO:", "max_tokens": 400, "temperature": 0.8, "seed": 1, "stream": True}
    chunks = []
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        for line in r.iter_lines():
            if line.startswith("data: "):
                chunks.append(line[6:])
    # characters that arrive while a chunk is written go out together: how many chunks depends on timing
    assert chunks[-1] == "[DONE]" and len(chunks) >= 3
    parsed = [json.loads(c) for c in chunks[:-1]]
    text = "".join(c["choices"][0]["text"] for c in parsed if c["choices"])
    expected = generate(lm.model, lm.vocab, SampleConfig(prompt="ROMEO:", length=400, temperature=0.8, seed=1))[0]
    assert text == expected
    assert parsed[-1]["choices"][0]["finish_reason"] == "length"
    whole = httpx.post(f"{url}/v1/completions", json={**body, "stream": False}, timeout=30).json()
    assert whole["choices"][0]["text"] == expected and whole["usage"]["completion_tokens"] == 400


def test_n_echo_stop_and_logprobs(server, lm_run):
    url, _ = server
    lm = load(lm_run)
    body = {"model": "lm", "prompt": "First", "max_tokens": 50, "temperature": 1.0, "seed": 7, "n": 3, "echo": True}
    got = httpx.post(f"{url}/v1/completions", json=body, timeout=30).json()
    texts = generate(lm.model, lm.vocab, SampleConfig(prompt="First", length=50, seed=7, num_samples=3))
    assert [c["text"] for c in got["choices"]] == ["First" + t for t in texts]     # one generator for n rows
    greedy = generate(lm.model, lm.vocab, SampleConfig(prompt="\n", length=200, temperature=0))[0]
    stop = greedy[5:7]
    cut = greedy[:greedy.index(stop)]
    got = httpx.post(f"{url}/v1/completions", json={"model": "lm", "prompt": "\n", "max_tokens": 200,
                                                   "temperature": 0, "stop": [stop, "\x00"]}, timeout=30).json()
    assert got["choices"][0]["text"] == cut and got["choices"][0]["finish_reason"] == "stop"
    got = httpx.post(f"{url}/v1/completions", json={"model": "lm", "prompt": "A", "max_tokens": 5,
                                                   "temperature": 0, "logprobs": 3}, timeout=30).json()
    lp = got["choices"][0]["logprobs"]
    assert "".join(lp["tokens"]) == got["choices"][0]["text"] and len(lp["top_logprobs"][0]) == 3
    assert all(v <= 0 for v in lp["token_logprobs"]) and lp["text_offset"] == list(range(5))
    assert max(lp["top_logprobs"][0].values()) == pytest.approx(lp["token_logprobs"][0])   # greedy: the top one


def test_the_openai_client_works_unchanged(server, lm_run):
    openai = pytest.importorskip("openai", reason="the openai client is a test dependency")
    url, _ = server
    lm = load(lm_run)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
    assert "lm" in [m.id for m in client.models.list().data]
    done = client.completions.create(model="lm", prompt="ROMEO:", max_tokens=40, temperature=0.5, seed=3)
    expected = generate(lm.model, lm.vocab, SampleConfig(prompt="ROMEO:", length=40, temperature=0.5, seed=3))[0]
    assert done.choices[0].text == expected and done.usage.completion_tokens == 40
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="lm", prompt="ROMEO:", max_tokens=40, temperature=0.5, seed=3, stream=True) if c.choices)
    assert streamed == expected
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="lm", prompt="x", max_tokens=10, temperature=-1)
    assert "temperature" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x", max_tokens=3)


def test_score_and_classify_equal_the_library(server, lm_run, classifier_run):
    url, _ = server
    lm, clf = load(lm_run), load_classifier(classifier_run)
    text = "KING HENRY:\nNow, lords, to France; the enterprise whereof ✓ shall be to you.\n"
    got = httpx.post(f"{url}/v1/score", json={"model": "lm", "text": text}, timeout=30).json()
    ref = evaluate_stream(lm.model, lm.vocab.encode(text, skip_unknown=True), streams=1)
    assert got["bits_per_char"] == pytest.approx(ref.bits_per_char, rel=1e-6) and got["chars"] == ref.chars
    assert len(got["surprisal"]) == len(text) and got["unknown"] == sum(c not in lm.vocab.index for c in text)
    bits = [c["bits"] for c in got["surprisal"] if c["bits"] is not None]
    assert sum(bits) / len(bits) == pytest.approx(ref.bits_per_char, abs=1e-3)
    texts = ["a joy to watch", "tedious and slow, hated it", "<b>brilliant</b>"]
    got = httpx.post(f"{url}/v1/classify", json={"model": "clf", "texts": texts}, timeout=30).json()
    for entry, pred in zip(got["data"], predict(clf, texts)):
        assert entry["label"] == pred.label and entry["probability"] == pytest.approx(pred.probability, abs=1e-6)


def test_concurrent_greedy_requests_get_their_solo_texts(server, lm_run):
    url, srv = server
    lm = load(lm_run)
    prompts = ["ROMEO:", "First Citizen:", "\n", "All:", "KING", "Speak", "A", "We"]
    solo = [generate(lm.model, lm.vocab, SampleConfig(prompt=p, length=300, temperature=0))[0] for p in prompts]
    steps = srv.models["lm"].engine.steps

    async def go():
        async with httpx.AsyncClient(timeout=60) as client:
            rs = await asyncio.gather(*[client.post(f"{url}/v1/completions", json={
                "model": "lm", "prompt": p, "max_tokens": 300, "temperature": 0}) for p in prompts])
            return [r.json()["choices"][0]["text"] for r in rs]
    assert asyncio.run(go()) == solo
    assert srv.models["lm"].engine.steps - steps < 8 * 300        # they shared steps


def test_a_disconnect_stops_its_generation(server):
    url, srv = server
    engine = srv.models["lm"].engine
    body = json.dumps({"model": "lm", "prompt": "A", "max_tokens": 10_000, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while b"data: " not in got:                 # the headers, then the first chunk
        got += s.recv(4096)
    assert health(url)["active_streams"] == 1
    s.close()
    deadline = time.monotonic() + 10
    while (health(url)["active_streams"] or engine.count) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health(url)["active_streams"] == 0 and engine.count == 0 and not engine.active


BAD = [
    ("/v1/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/completions", [1, 2], 400, "JSON object"),
    ("/v1/completions", {"prompt": "x"}, 400, "model: required"),
    ("/v1/completions", {"model": "nope"}, 404, "not loaded"),
    ("/v1/completions", {"model": "clf", "prompt": "x"}, 400, "is a classifier"),
    ("/v1/completions", {"model": "lm", "max_tokens": "ten"}, 400, "max_tokens: must be an integer"),
    ("/v1/completions", {"model": "lm", "max_tokens": 10**9}, 400, "max_tokens: must be 1 to"),
    ("/v1/completions", {"model": "lm", "n": 1000}, 400, "n: must be 1 to"),
    ("/v1/completions", {"model": "lm", "temperature": -2}, 400, "temperature"),
    ("/v1/completions", {"model": "lm", "top_p": 0}, 400, "top_p"),
    ("/v1/completions", {"model": "lm", "stream": "yes"}, 400, "stream: must be true or false"),
    ("/v1/completions", {"model": "lm", "best_of": 3}, 400, "unknown field(s) best_of"),
    ("/v1/completions", {"model": "lm", "prompt": "x" * 30_000}, 400, "over the limit"),
    ("/v1/completions", {"model": "lm", "prompt": []}, 400, "non-empty list"),
    ("/v1/completions", {"model": "lm", "stop": [""]}, 400, "empty stop"),
    ("/v1/completions", {"model": "lm", "presence_penalty": 1}, 400, "not supported"),
    ("/v1/score", {"model": "lm", "text": "x"}, 400, "at least two"),
    ("/v1/score", {"model": "lm", "text": 5}, 400, "text: must be a string"),
    ("/v1/classify", {"model": "clf"}, 400, "give texts"),
    ("/v1/classify", {"model": "clf", "texts": ["a", 3]}, 400, "list of strings"),
    ("/v1/classify", {"model": "lm", "texts": ["a"]}, 400, "is a language model"),
    ("/v1/nothing", {}, 404, "no such endpoint"),
]


@pytest.mark.parametrize("path,body,status,message", BAD, ids=[f"{b[0]}:{b[3]}" for b in BAD])
def test_bad_requests_get_their_status_and_the_server_keeps_serving(server, path, body, status, message):
    url, _ = server
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(f"{url}{path}", content=data, headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert message in err["message"] and set(err) == {"message", "type", "param", "code"}
    assert health(url)["status"] == "ok"


def test_huge_body_foreign_host_and_methods(server):
    url, _ = server
    r = httpx.post(f"{url}/v1/completions", content=b"x" * 2_000_000, timeout=10)
    assert r.status_code == 413 and "1,000,000 bytes" in r.json()["error"]["message"]
    r = httpx.get(f"{url}/v1/models", headers={"Host": "attacker.example"}, timeout=10)
    assert r.status_code == 421 and r.json()["error"]["code"] == "host_not_allowed"
    assert httpx.get(f"{url}/v1/models", headers={"Host": "localhost:1234"}, timeout=10).status_code == 200
    r = httpx.get(f"{url}/v1/completions", timeout=10)
    assert r.status_code == 405
    page = httpx.get(f"{url}/", timeout=10)
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.") and "/v1/completions" in spec["paths"]


def test_api_key_and_stream_limit(lm_run):
    with running([lm_run], api_key="sesame", limits=Limits(max_streams=2, max_tokens=500_000)) as (url, srv):
        body = {"model": "lm", "prompt": "A", "max_tokens": 3}
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        auth = {"Authorization": "Bearer sesame"}
        assert httpx.post(f"{url}/v1/completions", json=body, headers=auth, timeout=10).status_code == 200
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200          # no key needed
        long = {"model": "lm", "prompt": "A", "max_tokens": 500_000, "stream": True}   # unread: they stay open
        with httpx.stream("POST", f"{url}/v1/completions", json=long, headers=auth, timeout=30) as a, \
                httpx.stream("POST", f"{url}/v1/completions", json=long, headers=auth, timeout=30) as b:
            lines = [a.iter_lines(), b.iter_lines()]            # held: a dropped iterator closes its stream
            next(lines[0]), next(lines[1])
            r = httpx.post(f"{url}/v1/completions", json=body, headers=auth, timeout=10)
            assert r.status_code == 429 and "--max-streams" in r.json()["error"]["message"]
        deadline = time.monotonic() + 10
        while srv.streams and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.post(f"{url}/v1/completions", json=body, headers=auth, timeout=10).status_code == 200


def test_a_bounded_load_loses_nothing(server):
    url, _ = server

    async def go():
        sem = asyncio.Semaphore(16)
        async with httpx.AsyncClient(timeout=60) as client:
            async def one(i):
                async with sem:
                    r = await client.post(f"{url}/v1/completions", json={
                        "model": "lm", "prompt": "ROMEO:", "max_tokens": 40, "seed": i, "stream": i % 2 == 0})
                    assert r.status_code == 200
                    if i % 2:
                        return r.json()["choices"][0]["text"]
                    events = sse(r.text)
                    assert events[-1] == "[DONE]"
                    return "".join(c["choices"][0]["text"] for c in events[:-1] if c["choices"])
            return await asyncio.gather(*[one(i) for i in range(64)])
    texts = asyncio.run(go())
    assert len(texts) == 64 and all(len(t) == 40 for t in texts)
    assert not math.isnan(len(set(texts)))


def test_a_request_past_the_time_limit_ends_with_an_error(lm_run):
    with running([lm_run], limits=Limits(time_limit=0.2, max_tokens=1_000_000)) as (url, srv):
        body = {"model": "lm", "prompt": "A", "max_tokens": 1_000_000}
        r = httpx.post(f"{url}/v1/completions", json=body, timeout=30)
        assert r.status_code == 500 and "time limit" in r.json()["error"]["message"]
        events = sse(httpx.post(f"{url}/v1/completions", json={**body, "stream": True}, timeout=30).text)
        assert "time limit" in events[-2]["error"]["message"] and events[-1] == "[DONE]"
        assert srv.models["lm"].engine.count == 0


def test_rnnkit_serve_from_the_command_line(lm_run, classifier_run, tmp_path):
    import signal
    import subprocess
    import sys
    bad = subprocess.run([sys.executable, "-m", "rnnkit", "serve", str(tmp_path / "missing"), "--port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such run directory" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "serve", str(lm_run), str(classifier_run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "serving lm, clf on http://127.0.0.1:" in line
        url = "http://" + line.split("http://")[1].split("/")[0]
        assert httpx.get(f"{url}/healthz", timeout=10).json()["models"] == ["lm", "clf"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) in (0, 130)
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()


def test_a_naive_bayes_classifier_is_described_and_served_with_its_blend(tmp_path):
    from rnnkit.config import ClassifierConfig, ClassifierTrainConfig, TextDataConfig
    from rnnkit.training.classifier import train

    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "".join(f"a fine moving film {i} indeed,pos\na dull tedious mess {i},neg\n"
                                             for i in range(12)), encoding="utf-8")
    train(TextDataConfig(path=str(data), min_freq=1), ClassifierConfig(hidden_size=8, embed_size=8, naive_bayes=4096),
          ClassifierTrainConfig(batch_size=4, epochs=1, device="cpu", threads=1), tmp_path / "nb", quiet=True)
    clf = load_classifier(tmp_path / "nb")
    with running([tmp_path / "nb"]) as (url, _):
        info = httpx.get(f"{url}/v1/models/nb", timeout=10).json()
        texts = ["a fine film indeed", "a dull mess"]
        got = httpx.post(f"{url}/v1/classify", json={"model": "nb", "texts": texts}, timeout=30).json()
    assert info["naive_bayes"] == 4096
    assert info["blend"] == {"network": pytest.approx(float(clf.model.blend[0]), abs=1e-6),
                             "naive_bayes": pytest.approx(float(clf.model.blend[1]), abs=1e-6)}
    assert info["blend"]["naive_bayes"] > 0
    for entry, pred in zip(got["data"], predict(clf, texts)):
        assert entry["label"] == pred.label and entry["probability"] == pytest.approx(pred.probability, abs=1e-6)
