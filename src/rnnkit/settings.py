"""From what a user wrote to config dataclasses: a TOML file's tables, command-line values, a request's
fields. The CLI and the server both build their configs here, so the same words mean the same run.

Precedence, lowest first: the dataclass defaults < a ``--config`` TOML file < flags (or request fields).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, TypeVar

from .config import ConfigError, from_dict, parse_duration

TABLES = ("data", "model", "train")
C = TypeVar("C")


def read_toml(path: str) -> dict:
    """``[data]``, ``[model]``, ``[train]`` tables (and a top-level ``out``) of a TOML file; a duration such
    as ``time_budget = "10m"`` becomes seconds."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path}: is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - {*TABLES, "out"})
    if unknown:
        raise ConfigError(f"--config {path}: unknown table(s) {', '.join(unknown)}; use [data], [model], [train]")
    for table in TABLES:
        if not isinstance(data.get(table, {}), dict):
            raise ConfigError(f"--config {path}: {table} must be a table ([{table}])")
        data[table] = {k.replace("-", "_"): v for k, v in data.get(table, {}).items()}
    train = data["train"]
    if isinstance(train.get("time_budget"), str):
        train["time_budget"] = parse_duration(train["time_budget"])
    return data


def eval_cadence(text: str) -> dict[str, Any]:
    """``--eval-every``: '500' -> every 500 steps; '60s', '2m' -> every so many seconds of training."""
    if text.strip().isdigit():
        steps = int(text)
        if steps < 1:
            raise ConfigError(f"must be at least 1, got {steps}")
        return {"eval_every": steps, "eval_every_s": None}
    return {"eval_every": None, "eval_every_s": parse_duration(text)}


def build(cls: type[C], *layers: Optional[Mapping[str, Any]], source: str) -> C:
    """``cls`` from mappings of field values, later ones overriding earlier ones; unknown fields and bad
    values raise ``ConfigError`` naming ``source``."""
    values: dict[str, Any] = {}
    for layer in layers:
        values.update(layer or {})
    return from_dict(cls, values, source=source)
