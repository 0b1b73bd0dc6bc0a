"""One self-contained HTML page per view: the data as JSON in a ``<script type="application/json">`` block
(every ``<``, ``>`` and ``&`` escaped, so no text can end the block), the CSS and the script inline, and a
Content-Security-Policy that lets the page load nothing at all: it works opened from disk, offline, and a
model's text (a model trained on HTML writes ``<script>``) is only ever set as text, never parsed as HTML.

Numbers are rounded for size: surprisal to 0.01 bits, probabilities to 0.001, activations to 0.01.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from importlib import resources
from typing import Any, Optional, Sequence

from .reading import Reading
from .trace import FEATURES, LMTrace, Unit, pick_units, rank_units

ASSETS = "assets"


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(ASSETS, name).read_text(encoding="utf-8")


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def _json_block(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render(data: dict, title: str) -> str:
    """The page: ``data`` (``lm_data`` or ``classifier_data``) with the viewer's CSS and script."""
    css, js = _asset("page.css"), _asset("page.js")
    csp = (f"default-src 'none'; script-src {_csp_hash(js)}; style-src {_csp_hash(css)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
        "<noscript>This page draws its views with JavaScript; allow scripts for this file.</noscript>\n"
        f"<script id=\"data\" type=\"application/json\">{_json_block(data)}</script>\n"
        f"<script>{js}</script>\n</body></html>\n")


def _r(x: float, digits: int) -> Optional[float]:
    return None if not math.isfinite(x) else round(x, digits)


def describe_model(run: dict, run_dir: str, weights: str) -> dict:
    m = run.get("model", {})
    return {"run": str(run_dir), "weights": weights, "cell": m.get("cell"), "layers": m.get("num_layers"),
            "hidden": m.get("hidden_size"), "bidirectional": m.get("bidirectional"), "pooling": m.get("pooling")}


def lm_data(tr: LMTrace, vocab_chars: Sequence[str], model: dict, units: Sequence[Unit],
            ranked: Sequence[Unit], *, source: str) -> dict:
    """The language-model page's data: surprisal and top predictions per character, the chosen units'
    activations, the best unit per text feature, and gate saturation per layer."""
    best = {}
    for u in ranked:                                   # ranked: strongest correlation first
        if u.feature is not None and u.feature not in best:
            best[u.feature] = {"unit": u.name, "r": _r(u.r, 3)}
    return {
        "kind": "lm", "model": model, "source": source, "text": tr.text, "vocab": list(vocab_chars),
        "positions": tr.positions.tolist() if tr.unknown else None,       # None: every character is known
        "bits": [_r(float(s), 2) for s in tr.surprisal.tolist()],
        "top": [[int(i) for i in row] for row in tr.top_ids.tolist()],
        "topp": [[_r(p, 3) for p in row] for row in tr.top_probs.tolist()],
        "bpc": _r(tr.bits_per_char, 4), "scored": tr.scored, "unknown": tr.unknown,
        "activation": tr.activation,
        "units": [{"name": u.name, "feature": u.feature, "r": _r(u.r, 3),
                   "values": [round(v, 2) for v in tr.activations[u.layer][:, u.unit].tolist()]} for u in units],
        "features": [f for f in FEATURES if f in best], "best": best,
        "gates": {str(k): {g: [[round(float(a), 3), round(float(b), 3)] for a, b in zip(lo.tolist(), hi.tolist())]
                           for g, (lo, hi) in gates.items()} for k, gates in tr.saturation.items()},
        "saturated": [0.1, 0.9],
    }


def classifier_data(rd: Reading, model: dict, *, source: str) -> dict:
    return {
        "kind": "classifier", "model": model, "source": source, "text": rd.text,
        "spans": [list(s) for s in rd.spans], "words": rd.words, "known": [int(k) for k in rd.known],
        "labels": rd.labels, "label": rd.label, "start": [_r(p, 4) for p in rd.start.tolist()],
        "probs": [[_r(p, 4) for p in row] for row in rd.probs.tolist()],
    }


def lm_page(tr: LMTrace, vocab_chars: Sequence[str], model: dict, units: int | Sequence[tuple[int, int]] = 32,
            *, source: str = "text") -> str:
    ranked = rank_units(tr)
    chosen = pick_units(tr, ranked, units)
    title = f"rnnkit viz: {model.get('run')} on {source}"
    return render(lm_data(tr, vocab_chars, model, chosen, ranked, source=source), title)


def classifier_page(rd: Reading, model: dict, *, source: str = "text") -> str:
    return render(classifier_data(rd, model, source=source), f"rnnkit viz: {model.get('run')} reading {source}")
