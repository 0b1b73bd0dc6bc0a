"""Flags declared from the config dataclasses: each flag names its field, and its default, its type (where
the flag adds no bounds of its own) and the default shown in ``--help`` come from that field. Flags default
to SUPPRESS, so that only what the user typed reaches the config and a ``--config`` file fills the rest.

A flag's value lands in ``args`` under ``section.field`` (``model.hidden_size``); ``sections(args)`` gathers
them into one mapping per config table.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from typing import Any, Callable, Optional

from ..config import ConfigError, parse_duration
from ..settings import eval_cadence

SUPPRESS = argparse.SUPPRESS


# ----------------------------------------------------------------------------- argument types

def whole(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if low == 0 else f'at least {low}'}, got {value}")
        return value
    return parse


positive_int, nonneg_int = whole(1), whole(0)


def threads(text: str) -> int:
    """At most the machine's CPUs: OpenMP crashes (SIGSEGV) when asked for tens of thousands of threads."""
    value, cpus = positive_int(text), os.cpu_count() or 1
    if value > cpus:
        raise argparse.ArgumentTypeError(f"must be at most {cpus}, the number of CPUs here; got {value}")
    return value


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {value:g}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'<' if high_open else '<='} {high:g}, got {value:g}")
        return value
    return parse


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cadence(text: str) -> dict[str, Any]:
    """``--eval-every``: two TrainConfig fields at once (``eval_every`` steps or ``eval_every_s`` seconds)."""
    try:
        return eval_cadence(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def escapes(text: str) -> str:
    r"""``\n`` and ``\t`` typed on a command line are a line break and a tab; ``\\`` is a backslash."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def cell_option(text: str) -> tuple[str, Any]:
    """``--cell-option NAME=VALUE``: the value read as a number or true/false where it is one."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    raw = raw.strip()
    value: Any = {"true": True, "false": False}.get(raw.lower(), raw)
    if isinstance(value, str):
        for parse in (int, float):
            try:
                value = parse(raw)
                break
            except ValueError:
                continue
    return name.strip().replace("-", "_"), value


_BY_ANNOTATION = {"int": int, "float": number(), "str": str}


# ----------------------------------------------------------------------------- declaring flags

def shown(value: Any) -> Optional[str]:
    if value is None or isinstance(value, bool):
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def add(group, section: str, cls: type, flag: str, help: str, *, field: Optional[str] = None,
        type: Optional[Callable] = None, choices=None, default_text: Optional[str] = None,
        metavar: Optional[str] = None) -> None:
    """Add ``flag`` for ``cls.field`` (field: the flag's name with underscores) to ``group``."""
    name = field or flag.lstrip("-").replace("-", "_")
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    kw: dict[str, Any] = {"dest": f"{section}.{name}", "default": SUPPRESS}
    if f.type == "bool":
        kw["action"] = argparse.BooleanOptionalAction      # --x and --no-x: a recipe's choice can be refused
    else:
        kw["type"] = type or _BY_ANNOTATION[f.type.replace("Optional[", "").rstrip("]")]
        if choices is not None:
            kw["choices"] = choices
        if choices is None:
            kw["metavar"] = metavar or flag.lstrip("-").upper().replace("-", "_")
    default = default_text or shown(f.default)
    kw["help"] = help + (f" (default {default})" if default else "")
    group.add_argument(flag, **kw)


def sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The values the user gave, per config table: ``{"model": {"hidden_size": 384}, ...}``. A flag whose
    value is a mapping (``--eval-every``) sets several fields; ``--cell-option`` pairs become a mapping."""
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." not in dest:
            continue
        section, name = dest.split(".", 1)
        table = out.setdefault(section, {})
        if isinstance(value, dict):
            table.update(value)
        elif name == "cell_options":
            table[name] = dict(value)
        else:
            table[name] = value
    return out
