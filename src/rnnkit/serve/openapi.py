"""The OpenAPI 3.1 description served at ``/openapi.json`` (as JSON only: no documentation page that loads
scripts from a CDN)."""

from __future__ import annotations

from .._version import __version__
from .api import Limits


def _error() -> dict:
    return {"description": "an error: {\"error\": {\"message\", \"type\", \"param\", \"code\"}}",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def describe(limits: Limits) -> dict:
    string_or_list = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    completion = {
        "type": "object", "required": ["model"], "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "description": "a loaded model's name (GET /v1/models)"},
            "prompt": {**string_or_list, "default": "\n", "description": f"at most {limits.max_prompt:,} characters; "
                       f"a list gives one set of choices per prompt (at most {limits.max_prompts})"},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": limits.max_tokens, "default": 256,
                           "description": "characters to generate per choice"},
            "temperature": {"type": "number", "minimum": 0, "default": 1, "description": "0 = greedy"},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "top_k": {"type": "integer", "minimum": 1, "description": "rnnkit's: sample among the k likeliest"},
            "n": {"type": "integer", "minimum": 1, "maximum": limits.max_n, "default": 1},
            "seed": {"type": "integer", "description": "same seed, same text (as rnnkit sample --seed)"},
            "stop": {**string_or_list, "description": "up to 4; generation of a choice ends before the first"},
            "echo": {"type": "boolean", "default": False},
            "stream": {"type": "boolean", "default": False, "description": "server-sent events, then data: [DONE]"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
            "logprobs": {"type": "integer", "minimum": 0, "maximum": 20,
                         "description": "log-probability of each character and of its top alternatives"},
            "user": {"type": "string"}, "frequency_penalty": {"const": 0}, "presence_penalty": {"const": 0},
        }}
    paths = {
        "/v1/completions": {"post": {
            "summary": "generate text (OpenAI completions API; max_tokens counts characters)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": completion}}},
            "responses": {"200": {"description": "the completion, or a text/event-stream of chunks"},
                          "400": _error(), "404": _error(), "413": _error(), "429": _error()}}},
        "/v1/score": {"post": {
            "summary": "nats/char, bits/char, perplexity and per-character surprisal of a text",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["model", "text"], "additionalProperties": False,
                "properties": {"model": {"type": "string"}, "text": {"type": "string", "minLength": 2}}}}}},
            "responses": {"200": {"description": "the scores"}, "400": _error(), "404": _error()}}},
        "/v1/classify": {"post": {
            "summary": "labels and probabilities of texts from a classifier run",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["model"], "additionalProperties": False,
                "properties": {"model": {"type": "string"}, "text": {"type": "string"},
                               "texts": {"type": "array", "items": {"type": "string"},
                                         "maxItems": limits.max_texts}}}}}},
            "responses": {"200": {"description": "one entry per text"}, "400": _error(), "404": _error()}}},
        "/v1/models": {"get": {"summary": "the loaded models", "responses": {"200": {"description": "a list"}}}},
        "/v1/models/{name}": {"get": {"summary": "one loaded model",
                                      "parameters": [{"name": "name", "in": "path", "required": True,
                                                      "schema": {"type": "string"}}],
                                      "responses": {"200": {"description": "the model"}, "404": _error()}}},
        "/healthz": {"get": {"summary": "liveness and load", "responses": {"200": {"description": "ok"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "rnnkit", "version": __version__,
                 "description": "Character language models and text classifiers over HTTP."},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]}}}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "only when the server runs with --api-key"}}},
    }
