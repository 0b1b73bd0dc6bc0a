"""The HTTP API's requests and answers: each body checked field by field into rnnkit's configs (the same
``SampleConfig`` validation as ``rnnkit sample``), answers in the shapes OpenAI's completions API uses, and
errors in its shape, ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..config import ConfigError, SampleConfig
from ..settings import build


@dataclass(frozen=True)
class Limits:
    max_body: int = 1_000_000           # bytes of a request body
    max_prompt: int = 20_000            # characters of a prompt or of a text to score
    max_tokens: int = 10_000            # characters generated per choice
    max_n: int = 16                     # choices per prompt
    max_prompts: int = 16               # prompts per request
    max_streams: int = 128              # generation requests running at once (429 beyond)
    max_texts: int = 256                # texts per classification request
    time_limit: float = 300.0           # seconds a request may run


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: Optional[str] = None, type: str = "invalid_request_error",
                 code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type, code

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: Optional[str] = None,
               code: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", param=param)


def _kind(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _field(body: dict, name: str, kind: type, default: Any = None, *, nullable: bool = True) -> Any:
    value = body.get(name, default)
    if value is None and nullable:
        return None
    if not _kind(value, kind):
        what = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, kind.__name__)
        raise _bad(name, f"must be {what}, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def _strings(body: dict, name: str, *, limit: int, max_len: int, default: Any = None) -> Optional[list[str]]:
    value = body.get(name, default)
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) for s in items):
        raise _bad(name, "must be a string or a non-empty list of strings")
    if len(items) > limit:
        raise _bad(name, f"at most {limit} items, got {len(items)}")
    for s in items:
        if len(s) > max_len:
            raise ApiError(400, f"{name}: {len(s):,} characters is over the limit of {max_len:,}", param=name,
                           code="too_long")
    return items


def check_fields(body: Any, known: set[str]) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                       param=unknown[0])
    if not isinstance(body.get("model"), str):
        raise _bad("model", "required: the name of a loaded model (GET /v1/models lists them)")
    return body


COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "seed", "stop", "echo",
                     "stream", "logprobs", "user", "stream_options", "frequency_penalty", "presence_penalty"}


@dataclass(frozen=True)
class Completion:
    model: str
    prompts: list[str]
    configs: list[SampleConfig]         # one per prompt
    stops: tuple[str, ...]
    echo: bool
    stream: bool
    logprobs: Optional[int]
    include_usage: bool


def parse_completion(body: Any, limits: Limits) -> Completion:
    body = check_fields(body, COMPLETION_FIELDS)
    for name in ("frequency_penalty", "presence_penalty"):      # sent as 0 by some clients; nothing else works
        if body.get(name) not in (None, 0, 0.0):
            raise _bad(name, "not supported by a character RNN; leave it out or 0")
    prompts = _strings(body, "prompt", limit=limits.max_prompts, max_len=limits.max_prompt, default="\n")
    max_tokens = _field(body, "max_tokens", int, 256, nullable=False)
    if max_tokens < 1 or max_tokens > limits.max_tokens:
        raise ApiError(400, f"max_tokens: must be 1 to {limits.max_tokens:,} (characters), got {max_tokens:,}",
                       param="max_tokens")
    n = _field(body, "n", int, 1, nullable=False)
    if n < 1 or n > limits.max_n:
        raise ApiError(400, f"n: must be 1 to {limits.max_n}, got {n}", param="n")
    temperature = _field(body, "temperature", float, 1.0, nullable=False)
    top_p = _field(body, "top_p", float)
    top_k = _field(body, "top_k", int)
    seed = _field(body, "seed", int)
    stops = _strings(body, "stop", limit=4, max_len=100) or []
    if any(s == "" for s in stops):
        raise _bad("stop", "an empty stop string would stop at once")
    logprobs = _field(body, "logprobs", int)
    if logprobs is not None and not 0 <= logprobs <= 20:
        raise _bad("logprobs", f"must be 0 to 20 (top alternatives per character), got {logprobs}")
    options = body.get("stream_options")
    if options is not None and not (isinstance(options, dict) and set(options) <= {"include_usage"}):
        raise _bad("stream_options", 'only {"include_usage": true|false} is known')
    configs = []
    for p in prompts:
        values = {"prompt": p, "length": max_tokens, "temperature": temperature, "num_samples": n, "seed": seed,
                  "top_p": None if top_p in (None, 1, 1.0) else top_p, "top_k": top_k}
        try:
            configs.append(build(SampleConfig, values, source="request"))
        except ConfigError as e:
            message = str(e).removeprefix("request: ")
            param = next((k for k in ("temperature", "top_p", "top_k", "seed") if k in message), None)
            raise ApiError(400, message, param=param) from None
    return Completion(body["model"], prompts, configs, tuple(stops), bool(_field(body, "echo", bool, False)),
                      bool(_field(body, "stream", bool, False)), logprobs,
                      bool((options or {}).get("include_usage", False)))


def parse_score(body: Any, limits: Limits) -> tuple[str, str]:
    body = check_fields(body, {"model", "text"})
    text = _field(body, "text", str, nullable=False)
    if len(text) > limits.max_prompt:
        raise ApiError(400, f"text: {len(text):,} characters is over the limit of {limits.max_prompt:,}",
                       param="text", code="too_long")
    if len(text) < 2:
        raise _bad("text", "give at least two characters (the first has nothing before it to predict it)")
    return body["model"], text


def parse_classify(body: Any, limits: Limits) -> tuple[str, list[str]]:
    body = check_fields(body, {"model", "texts", "text"})
    if ("texts" in body) == ("text" in body):
        raise ApiError(400, "give texts (a list of strings) or text (one string)", param="texts")
    texts = _strings(body, "texts" if "texts" in body else "text", limit=limits.max_texts,
                     max_len=limits.max_prompt)
    return body["model"], texts


def logprobs_block(items: list, offset: int) -> dict:
    """OpenAI's completions ``logprobs``: tokens (characters), their log-probabilities, the top
    alternatives of each, and each one's offset in the returned text."""
    tokens, lps, tops, offsets = [], [], [], []
    for ch, info in items:
        tokens.append(ch)
        lps.append(info["logprob"] if info else None)
        tops.append(info.get("top") if info else None)
        offsets.append(offset)
        offset += len(ch)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}
