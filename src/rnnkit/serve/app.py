"""The Starlette application: the JSON API (OpenAI-style completions with server-sent events, scoring,
classification, models, health, the OpenAPI description) and the playground page, behind a guard that
checks the Host header (DNS rebinding), the API key and the body size, and adds security headers."""

from __future__ import annotations

import asyncio
import collections
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import torch
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..inference.predict import predict
from .api import (ApiError, Completion, Limits, error_body, logprobs_block, parse_classify, parse_completion,
                  parse_score)
from .engine import Batcher, Engine
from .engine import Request as GenRequest

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


@dataclass
class Model:
    name: str
    run_dir: str
    task: str                           # charlm | classifier
    loaded: Any                         # runs.LoadedLM or runs.LoadedClassifier
    engine: Optional[Engine] = None
    batcher: Optional[Batcher] = None
    created: int = field(default_factory=lambda: int(time.time()))

    def describe(self) -> dict:
        m = self.loaded.run["model"]
        out = {"id": self.name, "object": "model", "created": self.created, "owned_by": "rnnkit",
               "task": self.task, "run": self.run_dir, "cell": m.get("cell"), "layers": m.get("num_layers"),
               "hidden_size": m.get("hidden_size"), "parameters": self.loaded.model.num_parameters(),
               "weights": self.loaded.weights.name}
        if self.task == "charlm":
            out["vocab"] = "".join(self.loaded.vocab.chars)
        else:
            model = self.loaded.model
            out.update(labels=self.loaded.labels, vocab_size=len(self.loaded.vocab),
                       bidirectional=m.get("bidirectional"), pooling=m.get("pooling"),
                       naive_bayes=model.config.naive_bayes)
            if model.config.naive_bayes:                # logits = a·log_softmax(network) + b·log_softmax(NB)
                out["blend"] = {"network": round(float(model.blend[0]), 6),
                                "naive_bayes": round(float(model.blend[1]), 6)}
        return out


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: tuple[str, ...] = ()
    api_key: Optional[str] = None
    batching: bool = True
    limits: Limits = Limits()


def allowed_hosts(settings: Settings) -> set[str]:
    hosts = {"localhost", "127.0.0.1", "::1", "[::1]", *settings.allowed_hosts}
    if settings.host not in ("0.0.0.0", "::"):
        hosts.add(settings.host)
    return {h.lower() for h in hosts}


def _host_of(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: Host check, API key, body limit, headers; every refusal is a JSON error."""

    def __init__(self, app, settings: Settings):
        self.app, self.settings = app, settings
        self.hosts = allowed_hosts(settings)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        host = _host_of(headers.get("host", ""))
        if host not in self.hosts:
            return await _refuse(send, 421, f"Host {headers.get('host', '')!r} is not served here; start the "
                                             f"server with --allowed-host NAME to serve it", "host_not_allowed")
        key = self.settings.api_key
        if key and path.startswith("/v1/") and headers.get("authorization", "") != f"Bearer {key}":
            return await _refuse(send, 401, "missing or wrong API key: send Authorization: Bearer KEY",
                                 "invalid_api_key", kind="authentication_error")
        limit = self.settings.limits.max_body
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await _refuse(send, 413, f"the request body is over the limit of {limit:,} bytes", "body_too_large")
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge()
            return message

        async def with_headers(message):
            if message["type"] == "http.response.start":
                extra = PAGE_HEADERS if not path.startswith("/v1/") else API_HEADERS
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in have]
            await send(message)
        try:
            await self.app(scope, limited, with_headers)
        except _TooLarge:
            await _refuse(send, 413, f"the request body is over the limit of {limit:,} bytes", "body_too_large")


class _TooLarge(Exception):
    pass


async def _refuse(send, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
    body = json.dumps(error_body(message, kind, None, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


async def _json(request: Request) -> Any:
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise ApiError(400, "the client went away before the body arrived") from None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON ({e.__class__.__name__}: {str(e)[:80]})") from None


class Server:
    """The loaded models and the routes over them."""

    def __init__(self, models: list[Model], settings: Settings):
        self.models = {m.name: m for m in models}
        self.settings = settings
        self.streams = 0                                   # generation requests running now

    def close(self) -> None:
        for m in self.models.values():
            if m.engine:
                m.engine.close()
            if m.batcher:
                m.batcher.close()

    def model(self, name: str, task: str) -> Model:
        m = self.models.get(name)
        if m is None:
            raise ApiError(404, f"model {name!r} is not loaded; loaded: {', '.join(self.models)}", param="model",
                           code="model_not_found")
        if m.task != task:
            what = {"charlm": "a language model (use /v1/completions or /v1/score)",
                    "classifier": "a classifier (use /v1/classify)"}[m.task]
            raise ApiError(400, f"model {name!r} is {what}", param="model", code="wrong_model_type")
        return m

    # ------------------------------------------------------------------ routes

    def app(self) -> Starlette:
        routes = [Route("/", self.page), Route("/static/{name}", self.static),
                  Route("/healthz", self.health), Route("/openapi.json", self.openapi),
                  Route("/v1/models", self.list_models), Route("/v1/models/{name}", self.get_model),
                  Route("/v1/completions", self.completions, methods=["POST"]),
                  Route("/v1/score", self.score, methods=["POST"]),
                  Route("/v1/classify", self.classify, methods=["POST"])]
        app = Starlette(routes=routes, exception_handlers={404: self._not_found, 405: self._not_allowed})
        return Guard(app, self.settings)

    async def _not_found(self, request, exc):
        return JSONResponse(error_body(f"no such endpoint: {request.url.path}", code="not_found"), status_code=404)

    async def _not_allowed(self, request, exc):
        return JSONResponse(error_body(f"{request.method} is not allowed on {request.url.path}",
                                       code="method_not_allowed"), status_code=405)

    async def page(self, request: Request) -> Response:
        return Response(_asset("playground.html"), media_type="text/html; charset=utf-8")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        kinds = {"playground.js": "text/javascript; charset=utf-8", "playground.css": "text/css; charset=utf-8"}
        if name not in kinds:
            return JSONResponse(error_body(f"no such file: {name}", code="not_found"), status_code=404)
        return Response(_asset(name), media_type=kinds[name])

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": list(self.models), "active_streams": self.streams,
                             "queued": {n: m.engine.count for n, m in self.models.items() if m.engine}})

    async def openapi(self, request: Request) -> Response:
        from .openapi import describe
        return JSONResponse(describe(self.settings.limits))

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [m.describe() for m in self.models.values()]})

    async def get_model(self, request: Request) -> Response:
        m = self.models.get(request.path_params["name"])
        if m is None:
            return _error(ApiError(404, f"model {request.path_params['name']!r} is not loaded", param="model",
                                   code="model_not_found"))
        return JSONResponse(m.describe())

    async def score(self, request: Request) -> Response:
        try:
            name, text = parse_score(await _json(request), self.settings.limits)
            m = self.model(name, "charlm")
            result = (await asyncio.wrap_future(m.batcher.submit([text])))[0]
        except ApiError as e:
            return _error(e)
        return JSONResponse({"model": name, **result})

    async def classify(self, request: Request) -> Response:
        try:
            name, texts = parse_classify(await _json(request), self.settings.limits)
            m = self.model(name, "classifier")
            preds = await asyncio.wrap_future(m.batcher.submit(texts))
        except ApiError as e:
            return _error(e)
        return JSONResponse({"model": name, "object": "list",
                             "data": [{"index": i, **p.to_dict()} for i, p in enumerate(preds)]})

    async def completions(self, request: Request) -> Response:
        try:
            c = parse_completion(await _json(request), self.settings.limits)
            m = self.model(c.model, "charlm")
            limit = self.settings.limits.max_streams
            if self.streams >= limit:
                raise ApiError(429, f"the server is generating for {limit} requests already (--max-streams); "
                                    f"retry in a moment", type="rate_limit_error", code="too_many_streams")
        except ApiError as e:
            return _error(e)
        job = _Job(c, m, self.settings.limits.time_limit)
        self.streams += 1
        if c.stream:
            return StreamingResponse(self._stream(job), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            await job.run_to_end(request)
        finally:
            self.streams -= 1
            job.cancel()
        if job.error:
            return JSONResponse(error_body(job.error, "server_error", None, "generation_failed"), status_code=500)
        return JSONResponse(job.answer())

    async def _stream(self, job: "_Job"):
        try:
            async for chunk in job.chunks():
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
        finally:                                       # also when the client goes away: stop generating
            job.cancel()
            self.streams -= 1


class _Job:
    """One completion request: a generation request per prompt, their events on one asyncio queue."""

    def __init__(self, c: Completion, m: Model, time_limit: float):
        self.c, self.m = c, m
        self.id = f"cmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.loop = asyncio.get_running_loop()
        self.events: collections.deque = collections.deque()   # (prompt, kind, payload), from the engine thread
        self.ready = asyncio.Event()
        self._lock = threading.Lock()
        self._woken = False                                    # a wake-up is on its way to the event loop
        n = c.configs[0].num_samples
        self.n = n
        self.texts = ["" for _ in range(len(c.prompts) * n)]
        self.items: list[list] = [[] for _ in self.texts]   # (char, info) per choice, for logprobs
        self.finish: list[Optional[str]] = [None] * len(self.texts)
        self.error: Optional[str] = None
        deadline = time.monotonic() + time_limit
        self.requests = []
        for p, cfg in enumerate(c.configs):
            emit = (lambda p: lambda kind, payload: self._emit(p, kind, payload))(p)
            self.requests.append(m.engine.submit(GenRequest(cfg, c.stops, c.logprobs, emit, deadline)))
        self.pending = len(self.requests)

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()

    def _emit(self, p: int, kind: str, payload) -> None:
        """On the engine thread: queue the event; wake the event loop once for all that queue meanwhile."""
        with self._lock:
            self.events.append((p, kind, payload))
            if self._woken:
                return
            self._woken = True
        self.loop.call_soon_threadsafe(self.ready.set)

    async def batches(self):
        """Every event that arrived since the last look, in order, until each prompt is done."""
        while self.pending:
            await self.ready.wait()
            with self._lock:
                self.ready.clear()
                self._woken = False
                got = list(self.events)
                self.events.clear()
            self.pending -= sum(kind in ("done", "error", "cancelled") for _, kind, _ in got)
            yield got

    def _apply(self, p: int, kind: str, payload) -> list[dict]:
        """Record an event; the choices it adds to, as stream chunks' choice entries."""
        out = []
        if kind == "chars":
            for row, items in payload.items():
                i = p * self.n + row
                text = "".join(ch for ch, _ in items)
                entry = {"text": text, "index": i, "logprobs": None, "finish_reason": None}
                if self.c.logprobs is not None:
                    entry["logprobs"] = logprobs_block(items, len(self.texts[i]))
                self.texts[i] += text
                self.items[i] += items
                out.append(entry)
        elif kind == "done":
            for row, reason in payload.items():
                i = p * self.n + row
                self.finish[i] = reason
                out.append({"text": "", "index": i, "logprobs": None, "finish_reason": reason})
        elif kind == "error":
            self.error = payload
        return out

    async def run_to_end(self, request: Request) -> None:
        async def watch():                       # a client that goes away stops its generation
            while self.pending:
                if await request.is_disconnected():
                    self.cancel()
                    return
                await asyncio.sleep(0.25)
        watcher = asyncio.ensure_future(watch())
        try:
            async for got in self.batches():
                for p, kind, payload in got:
                    self._apply(p, kind, payload)
        finally:
            watcher.cancel()

    async def chunks(self):
        c = self.c
        if c.echo:
            yield self._chunk([{"text": c.prompts[i // self.n], "index": i, "logprobs": None, "finish_reason": None}
                               for i in range(len(self.texts))])
        async for got in self.batches():            # what arrived together goes out as one chunk
            entries: dict[int, dict] = {}
            for p, kind, payload in got:
                for e in self._apply(p, kind, payload):
                    old = entries.get(e["index"])
                    entries[e["index"]] = e if old is None else _merge(old, e)
            if self.error:
                yield error_body(self.error, "server_error", None, "generation_failed")
                return
            if entries:
                yield self._chunk(sorted(entries.values(), key=lambda e: e["index"]))
        if c.include_usage:
            yield {**self._chunk([]), "usage": self._usage()}

    def _chunk(self, choices: list[dict]) -> dict:
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.c.model,
                "choices": choices}

    def _usage(self) -> dict:
        prompt = sum(len(self.m.loaded.vocab.encode(p, skip_unknown=True)) or 1 for p in self.c.prompts)
        completion = sum(len(t) for t in self.texts)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def answer(self) -> dict:
        choices = []
        for i, text in enumerate(self.texts):
            head = self.c.prompts[i // self.n] if self.c.echo else ""
            entry = {"text": head + text, "index": i, "logprobs": None, "finish_reason": self.finish[i] or "length"}
            if self.c.logprobs is not None:
                entry["logprobs"] = logprobs_block(self.items[i], len(head))
            choices.append(entry)
        return {**self._chunk(choices), "usage": self._usage()}


def _merge(a: dict, b: dict) -> dict:
    """Two consecutive stream entries of one choice as one."""
    out = {**a, "text": a["text"] + b["text"], "finish_reason": b["finish_reason"] or a["finish_reason"]}
    if a["logprobs"] and b["logprobs"]:
        out["logprobs"] = {k: a["logprobs"][k] + b["logprobs"][k] for k in a["logprobs"]}
    elif b["logprobs"]:
        out["logprobs"] = b["logprobs"]
    return out


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("assets", name).read_bytes()


# ----------------------------------------------------------------------------- scoring and classifying

def score_texts(lm, texts: list[str]) -> list[dict]:
    """Each text read as one stream from the zero state (unknown characters left out and marked), in one
    padded batch: nats/char, bits/char, perplexity and each character's surprisal in bits."""
    vocab, model = lm.vocab, lm.model
    device = next(model.parameters()).device
    streams = [vocab.encode(t, skip_unknown=True).long() for t in texts]
    width = max(len(s) for s in streams)
    tokens = torch.zeros(len(texts), max(width, 1), dtype=torch.long)
    for b, s in enumerate(streams):
        tokens[b, :len(s)] = s
    with torch.inference_mode():
        logits, _ = model(tokens.to(device))
        logp = torch.log_softmax(logits.double(), -1).cpu()
    out = []
    for b, (text, s) in enumerate(zip(texts, streams)):
        nll = -logp[b, :len(s) - 1].gather(1, s[1:, None])[:, 0] if len(s) > 1 else torch.zeros(0)
        bits = (nll / math.log(2)).tolist()
        per_char, j = [], 0
        for ch in text:
            if ch not in vocab.index:
                per_char.append({"char": ch, "bits": None, "unknown": True})
                continue
            per_char.append({"char": ch, "bits": None if j == 0 else round(bits[j - 1], 4)})
            j += 1
        n = len(bits)
        nats = float(nll.sum()) / n if n else float("nan")
        out.append({"chars": n, "unknown": len(text) - len(s),
                    "nats_per_char": nats if n else None, "bits_per_char": nats / math.log(2) if n else None,
                    "perplexity": math.exp(nats) if n else None, "surprisal": per_char})
    return out


def load_models(run_dirs: list[str], settings: Settings, *, device: str = "cpu") -> list[Model]:
    """Every run given, loaded as the CLI loads it (safetensors and JSON); names from the directories."""
    from .. import checkpoint as ckpt
    from ..runs import load, load_classifier

    models, names = [], set()
    for d in run_dirs:
        task = ckpt.read_run(d).get("task")
        name = Path(d.rstrip("/")).name
        if name in names:
            raise ckpt.CheckpointError(f"two runs are named {name!r}; serve runs with different directory names")
        names.add(name)
        if task == "charlm":
            lm = load(d, device=device)
            m = Model(name, d, task, lm)
            m.engine = Engine(lm, batched=settings.batching, name=name)
            m.batcher = Batcher(lambda texts, lm=lm: score_texts(lm, texts), name=name, max_items=64)
        elif task == "classifier":
            clf = load_classifier(d, device=device)
            m = Model(name, d, task, clf)
            m.batcher = Batcher(lambda texts, clf=clf: predict(clf, texts), name=name)
        else:
            raise ckpt.CheckpointError(f"{d}: a {task} run cannot be served")
        models.append(m)
    return models
