"""The server's workers. A language model's ``Engine`` runs generation on its own thread: requests join
the batch between steps and leave it when they finish or are cancelled (``inference/batching.py``), and
their characters go back to the event loop as they are drawn. ``Batcher`` gathers the scoring and
classification requests that arrive while one batch runs into the next."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from ..config import SampleConfig
from ..inference import batching


@dataclass
class Row:
    """One generated text of a request, with the tail held back while it may still become a stop string."""
    stops: tuple[str, ...]
    text: str = ""                      # released
    held: list = field(default_factory=list)     # (char, logprob info) not yet released
    finish: Optional[str] = None        # "stop" | "length"

    def add(self, ch: str, info) -> list:
        """Append one character; returns what may be released now: [(char, info), ...]."""
        if self.finish is not None:
            return []
        self.held.append((ch, info))
        tail = "".join(c for c, _ in self.held)
        for s in self.stops:
            i = tail.find(s)
            if i >= 0:                                   # the stop string is left out of the text
                self.finish = "stop"
                out = self.held[:i]
                self.held = []
                return self._release(out)
        keep = max((k for s in self.stops for k in range(1, min(len(s), len(tail)) + 1)
                    if tail.endswith(s[:k])), default=0)
        out, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return self._release(out)

    def flush(self) -> list:
        out, self.held = self.held, []
        return self._release(out)

    def _release(self, items: list) -> list:
        self.text += "".join(c for c, _ in items)
        return items


class Request:
    """A generation request as the engine sees it. ``emit(kind, payload)`` is called on the engine thread:
    ``("chars", {row: [(char, info), ...]})``, ``("done", {row: finish_reason})``, ``("error", message)``."""

    def __init__(self, cfg: SampleConfig, stops: Sequence[str], logprobs: Optional[int],
                 emit: Callable[[str, Any], None], deadline: float):
        self.cfg, self.logprobs, self.emit, self.deadline = cfg, logprobs, emit, deadline
        self.rows = [Row(tuple(stops)) for _ in range(cfg.num_samples)]
        self.cancelled = threading.Event()
        self.group: Optional[batching.Group] = None

    def cancel(self) -> None:
        self.cancelled.set()


class Engine:
    """Generation for one language model on one thread; ``batched=False`` steps each request on its own
    (for comparison: the same kernels a lone request uses)."""

    def __init__(self, lm, *, batched: bool = True, name: str = ""):
        self.lm, self.batched = lm, batched
        self.incoming: queue.SimpleQueue = queue.SimpleQueue()
        self.wake = threading.Event()
        self.active: list[Request] = []
        self.count = 0                                  # requests submitted and not finished
        self._lock = threading.Lock()
        self._closed = False
        self.steps = 0                                  # batched steps taken (for /healthz)
        self.thread = threading.Thread(target=self._run, name=f"rnnkit-engine-{name}", daemon=True)
        self.thread.start()

    def submit(self, request: Request) -> Request:
        with self._lock:
            self.count += 1
        self.incoming.put(request)
        self.wake.set()
        return request

    def close(self) -> None:
        self._closed = True
        self.wake.set()
        self.thread.join(timeout=10)

    # ------------------------------------------------------------------ the engine thread

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._closed:
            if not self.active and self.incoming.empty():
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            self._admit()
            if not self.active:
                continue
            try:
                self._step()
            except Exception as e:              # a failure of the model itself: fail what is running, go on
                for r in self.active:
                    self._finish(r, error=f"generation failed: {e}")
                self.active = []

    def _admit(self) -> None:
        while True:
            try:
                r = self.incoming.get_nowait()
            except queue.Empty:
                return
            if r.cancelled.is_set():
                self._finish(r)
                continue
            try:
                r.group = batching.start(self.lm.model, self.lm.vocab, r.cfg, warn=lambda msg: None)
            except Exception as e:
                self._finish(r, error=f"cannot start generation: {e}")
                continue
            self.active.append(r)

    def _step(self) -> None:
        now = time.monotonic()
        live = []
        for r in self.active:
            if r.cancelled.is_set():
                self._finish(r)
            elif now > r.deadline:
                self._finish(r, error="the request ran past the server's time limit per request (--time-limit)")
            else:
                live.append(r)
        infos = [_logprobs(r.group.logits, r.logprobs) if r.logprobs is not None else None for r in live]
        groups = [r.group for r in live]
        draws = batching.draw_all(groups) if self.batched else [batching.draw(g) for g in groups]
        going, ids = [], []
        for r, info, drawn in zip(live, infos, draws):
            chars = {}
            for i, (row, t) in enumerate(zip(r.rows, drawn.tolist())):
                out = row.add(self.lm.vocab.chars[t], _info(info, i, t, self.lm.vocab) if info else None)
                if out:
                    chars[i] = out
            if chars:
                r.emit("chars", chars)
            if r.group.done or all(row.finish is not None for row in r.rows):
                self._finish(r)
                continue
            going.append(r)
            ids.append(drawn)
        self.active = going
        if going:
            batching.step(self.lm.model, [r.group for r in going], ids, batched=self.batched)
            self.steps += 1

    def _finish(self, r: Request, error: Optional[str] = None) -> None:
        with self._lock:
            self.count -= 1
        if error is not None:
            r.emit("error", error)
            return
        if r.cancelled.is_set():
            r.emit("cancelled", None)
            return
        tails = {i: out for i, row in enumerate(r.rows) if (out := row.flush())}
        if tails:
            r.emit("chars", tails)
        r.emit("done", {i: row.finish or "length" for i, row in enumerate(r.rows)})


def _logprobs(logits: torch.Tensor, k: int):
    lp = torch.log_softmax(logits.float(), -1)
    top = lp.topk(min(max(k, 1), lp.shape[-1]), -1) if k else None
    return lp, top


def _info(infos, row: int, chosen: int, vocab) -> dict:
    lp, top = infos
    out = {"logprob": float(lp[row, chosen])}
    if top is not None:
        out["top"] = {vocab.chars[int(i)]: float(v) for v, i in zip(top.values[row], top.indices[row])}
    return out


class Batcher:
    """Runs ``fn(items) -> results`` on one thread for the items of every request waiting when it starts,
    so concurrent requests share one batch. ``submit(items)`` returns a ``concurrent.futures.Future``."""

    def __init__(self, fn: Callable[[list], list], *, name: str = "", max_items: int = 1024):
        import concurrent.futures
        self.fn, self.max_items = fn, max_items
        self._futures = concurrent.futures
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=f"rnnkit-batcher-{name}", daemon=True)
        self.thread.start()

    def submit(self, items: list):
        f = self._futures.Future()
        self.jobs.put((items, f))
        return f

    def close(self) -> None:
        self.jobs.put(None)

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while (job := self.jobs.get()) is not None:
            batch = [job]
            n = len(job[0])
            while n < self.max_items:
                try:
                    nxt = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.jobs.put(None)
                    break
                batch.append(nxt)
                n += len(nxt[0])
            items = [x for its, _ in batch for x in its]
            try:
                results = self.fn(items)
            except Exception as e:
                for _, f in batch:
                    f.set_exception(e)
                continue
            i = 0
            for its, f in batch:
                f.set_result(results[i:i + len(its)])
                i += len(its)
