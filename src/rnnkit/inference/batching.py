"""Generation for many requests at once: each request's rows (its ``num_samples``) keep their own state,
logits and generator, and every step advances all active requests with one batched forward step of the
model (continuous batching: a request joins or leaves between steps).

What a request gets is what ``sampling.generate`` gives for its config and seed when the request is alone
in the batch: its prompt is read the same way, its draws come from its own generator in the same order,
and a lone one-row request steps on the fast path's kernels (``fast.Stepper``), as ``rnnkit sample``
does. When several requests share a step, the batched kernels may round differently from batch-1
kernels: each row's logits stay within 1e-5 of its solo logits (``tests/serve/test_batching.py``), so a
greedy text is the same and a sampled one is the same unless a draw falls within that distance of a
boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from ..config import SampleConfig
from ..nn.state import join, parts as _parts
from .fast import fast_path_supported, stepper as make_stepper
from .sampling import filter_logits, next_ids, prompt_ids, seeded_generator


@dataclass
class Group:
    """One request's rows: its config, generator, state and the logits of its next character."""
    cfg: SampleConfig
    generator: torch.Generator
    state: object = None                # torch.nn layout: h (L, n, H) or a tuple of such parts
    logits: Optional[torch.Tensor] = None   # (n, V): the distribution of the next character
    steps: int = 0                      # characters drawn so far
    drawn: list = field(default_factory=list)   # (n,) id tensors, one per step

    @property
    def rows(self) -> int:
        return self.cfg.num_samples

    @property
    def done(self) -> bool:
        return self.steps >= self.cfg.length


def start(model, vocab, cfg: SampleConfig, *, warn=None) -> Group:
    """A request primed on its prompt, as ``generate`` primes it."""
    device = next(model.parameters()).device
    generator = seeded_generator(device, cfg.seed)
    ids = prompt_ids(vocab, cfg.prompt, warn=warn).to(device)
    with torch.inference_mode():
        if cfg.num_samples == 1 and fast_path_supported(model):
            stepper = make_stepper(model)
            logits = stepper.prime(ids)
            state = stepper.state()
        else:
            out, state = model(ids[None].expand(cfg.num_samples, -1), None)
            logits = out[:, -1]
    return Group(cfg, generator, state, logits)


def draw(group: Group) -> torch.Tensor:
    """The group's next characters (n,), drawn from its logits with its own generator."""
    c = group.cfg
    ids = next_ids(group.logits, temperature=c.temperature, top_k=c.top_k, top_p=c.top_p,
                   generator=group.generator)
    group.drawn.append(ids)
    group.steps += 1
    return ids


@torch.inference_mode()
def draw_all(groups: Sequence[Group]) -> list[torch.Tensor]:
    """``draw`` for every group, with the groups that share their sampling settings drawn in one set of
    operations: each group's noise still comes from its own generator, in its own order, so every row gets
    the character ``draw`` would give it from the same logits."""
    out: list[Optional[torch.Tensor]] = [None] * len(groups)
    buckets: dict[tuple, list[int]] = {}
    for i, g in enumerate(groups):
        buckets.setdefault((g.cfg.temperature, g.cfg.top_k, g.cfg.top_p), []).append(i)
    for (temperature, top_k, top_p), idx in buckets.items():
        if len(idx) == 1:
            out[idx[0]] = draw(groups[idx[0]])
            continue
        members = [groups[i] for i in idx]
        logits = torch.cat([g.logits for g in members]).float()
        if temperature == 0:
            ids = logits.argmax(-1)
        else:
            if temperature != 1.0:
                logits = logits / temperature
            probs = filter_logits(logits, top_k=top_k, top_p=top_p).softmax(-1)
            q = torch.cat([torch.empty(g.rows, probs.shape[1], device=probs.device).exponential_(1, generator=g.generator)
                           for g in members])
            best, ids = torch.max(probs / q, -1)
            if math.isnan(float(best.sum())):
                raise ValueError("the model's scores are not finite numbers (its weights diverged in training)")
        for i, g, part in zip(idx, members, ids.split([g.rows for g in members])):
            g.drawn.append(part)
            g.steps += 1
            out[i] = part
    return out


@torch.inference_mode()
def step(model, groups: Sequence[Group], ids: Sequence[torch.Tensor], *, batched: bool = True) -> None:
    """Feed each group its drawn ``ids`` and set its next logits and state: all groups in one forward step
    (``batched``), or each in its own (the same kernels a lone request uses)."""
    if not groups:
        return
    if not batched or len(groups) == 1:
        for g, x in zip(groups, ids):
            g.logits, g.state = _forward(model, x, g.state)
        return
    sizes = [g.rows for g in groups]
    parts = _parts(groups[0].state)
    state = join([torch.cat([_parts(g.state)[p] for g in groups], 1) for p in range(len(parts))])
    ids = torch.cat(list(ids))
    if fast_path_supported(model):               # the fast path's kernels at any batch: a little quicker
        logits, state = _fast_step(model, ids, state)
    else:
        logits, state = _forward(model, ids, state)
    split_logits = logits.split(sizes)
    split_state = [s.split(sizes, 1) for s in _parts(state)]
    for i, g in enumerate(groups):
        g.logits = split_logits[i]
        g.state = join([s[i] for s in split_state])


def _forward(model, ids: torch.Tensor, state):
    """One character per row: ids (B,) -> logits (B, V), state. A single row on the CPU steps on the fast
    path (``fast.stepper``: ATen's kernels op for op, or the blocks' single-step form); anything else is
    ``model(x, state)``."""
    if ids.shape[0] == 1 and fast_path_supported(model):
        return _fast_step(model, ids, state)
    out, state = model(ids[:, None], state)
    return out[:, -1], state


def _fast_step(model, ids: torch.Tensor, state):
    """One step on the fast path (``fast.stepper``), from and to a state in the model's own layout."""
    stepper = make_stepper(model, state)
    return stepper.step(ids), stepper.state()
