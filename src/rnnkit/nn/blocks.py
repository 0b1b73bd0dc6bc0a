"""Recurrent blocks whose state update is linear in the state, so training can scan the whole sequence in
parallel while generation still steps one character at a time with a fixed-size state.

minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201, eq. 4 and appendix B):

    z_t = σ(W_z x_t)        h̃_t = g(W_h x_t)        h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t

with g(x) = x + 0.5 for x ≥ 0 and σ(x) below, which keeps h̃ (and so h) positive. ``parallel`` computes
every step of a chunk at once in log space (the paper's appendix: log z = −softplus(−k), log(1 − z) = −softplus(k),
log g as below, and Heinsen's scan: log h_t = a*_t + logcumsumexp(log b − a*)_t with a* the cumulative
log(1 − z)), which never divides by a running product; otherwise the same recurrence runs as a loop, the
reference. Both start from a carried h, so a chunk continued from the previous chunk's final state gives
what one pass over both gives.

RG-LRU (De et al. 2024, "Griffin", arXiv 2402.19427, §2.4): a diagonal linear recurrence whose decay a_t
and input are gated by the input, h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ u_t). Its inputs take either
sign; ``linear_scan`` runs it by recursive doubling, which multiplies decays and never divides by them.

The blocks around them follow what made these cells work for language modelling in the papers and in
lucidrains' minGRU-pytorch (pre-norm residual blocks, De et al. 2024, "Griffin", arXiv 2402.19427, §2):

    r = x + W_o mix(RMSNorm(x))         y = r + MLP(RMSNorm(r))

where mix is a short causal depthwise convolution (its last inputs are carried as state, so it too
continues across chunks and steps) and the recurrence, an expansion factor wide (RG-LRU also multiplies by
a GELU gate branch, as Griffin's recurrent block does), and the MLP a GELU one.

A block is a cell of ``recurrent.Unrolled``: ``project`` lifts the input to the block's width,
``unroll(x, state)`` runs the block over (B, T, H), and its state is ``(y, h, conv)``: the block's last
output (the first part is a layer's output, as for every cell), the recurrence, and the convolution's last
``conv − 1`` inputs.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x): log(x + 0.5) for x ≥ 0, log σ(x) = −softplus(−x) below."""
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def g(x: torch.Tensor) -> torch.Tensor:
    """x + 0.5 for x ≥ 0, σ(x) below: the larger of the two everywhere (they meet at 0, where x + 0.5 rises
    faster), so one maximum instead of a select."""
    return torch.maximum(x + 0.5, torch.sigmoid(x))


SCAN_CHUNK = 64      # steps scanned at once; the chunks follow one another carrying h (see chunked)


def chunked(scan, h0: torch.Tensor, *seqs: torch.Tensor, chunk: int = SCAN_CHUNK) -> torch.Tensor:
    """``scan(*seqs, h0)`` over (B, T, D) sequences, ``chunk`` steps at a time, each chunk started from the
    previous chunk's last h.

    One log-space scan over thousands of steps adds a large cumulative log-decay a* to a large log-sum-exp
    of the opposite sign, and float32 loses about |a*| · 6e-8 of relative precision there (0.5 % at
    T = 4,096 with strong gates); chunks bound |a*| by the chunk's length, at the cost of T / chunk
    sequential steps."""
    if seqs[0].shape[1] <= chunk:
        return scan(*seqs, h0)
    out = []
    for i in range(0, seqs[0].shape[1], chunk):
        out.append(scan(*(s[:, i:i + chunk] for s in seqs), h0))
        h0 = out[-1][:, -1]
    return torch.cat(out, 1)


def log_scan(log_a: torch.Tensor, log_b: torch.Tensor, log_h0: torch.Tensor) -> torch.Tensor:
    """log h_t for h_t = a_t h_{t−1} + b_t with a, b, h0 > 0, all in log space (Heinsen 2023, arXiv
    2311.06281): log h_t = a*_t + logcumsumexp(log b − a*)_t, a* the cumulative log a. No running product is
    ever divided by: every term stays a log. log_a, log_b (B, T, D), log_h0 (B, D) -> (B, T, D)."""
    a_star = F.pad(log_a.cumsum(1), (0, 0, 1, 0))                   # (B, T+1, D): 0, a_1, a_1 + a_2, ...
    log_h = a_star + torch.logcumsumexp(torch.cat([log_h0[:, None], log_b], 1) - a_star, dim=1)
    return log_h[:, 1:]


def _log(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(torch.finfo(x.dtype).tiny).log()            # log 0 -> about −87 (fp32), gradient 0


def mingru_scan(k: torch.Tensor, x: torch.Tensor, h0: torch.Tensor, chunk: int = SCAN_CHUNK) -> torch.Tensor:
    """Every h_t of minGRU: k, x (B, T, D) gate and candidate pre-activations, h0 (B, D) > 0 or 0; the
    paper's log forms: log(1 − z) = −softplus(k), log(z h̃) = −softplus(−k) + log g(x)."""
    return chunked(lambda k, x, h0: log_scan(-F.softplus(k), -F.softplus(-k) + log_g(x), _log(h0)).exp(),
                   h0, k, x, chunk=chunk)


def mingru_loop(k: torch.Tensor, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The reference: h_t = (1 − z_t) h_{t−1} + z_t h̃_t, one step after another."""
    z, cand = torch.sigmoid(k), g(x)
    out = []
    for t in range(k.shape[1]):
        h = torch.lerp(h, cand[:, t], z[:, t])                      # (1 − z) h + z h̃
        out.append(h)
    return torch.stack(out, 1)


def linear_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Every h_t of h_t = a_t h_{t−1} + b_t for decays 0 ≤ a ≤ 1 (given as log_a) and inputs b, h0 of any sign,
    by recursive doubling (Hillis & Steele 1986): pass d composes every step with the one d before it,
    (a, b)_t ∘ (a, b)_{t−d} = (a_t a_{t−d}, b_t + a_t b_{t−d}), so after log2 T passes each b_t is h_t. It
    only multiplies decays, never divides by a running product of them, and each pass is a few elementwise
    operations over the whole sequence (on this CPU 5x faster than scanning the positive and negative
    parts in log space, and 7x faster than the loop at T = 1,000). log_a, b (B, T, D), h0 (B, D)."""
    a = log_a.exp()
    b = torch.cat([torch.addcmul(b[:, :1], a[:, :1], h0[:, None]), b[:, 1:]], 1)
    d, steps = 1, b.shape[1]
    while d < steps:
        b = torch.addcmul(b, a, F.pad(b[:, :-d], (0, 0, d, 0)))
        if 2 * d < steps:
            a = a * F.pad(a[:, :-d], (0, 0, d, 0), value=1.0)
        d *= 2
    return b


def linear_loop(log_a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The reference: h_t = a_t h_{t−1} + b_t, one step after another."""
    a = log_a.exp()
    out = []
    for t in range(b.shape[1]):
        h = torch.addcmul(b[:, t], a[:, t], h)
        out.append(h)
    return torch.stack(out, 1)


def causal_conv(conv: Optional[nn.Conv1d], x: torch.Tensor, buf: torch.Tensor):
    """A depthwise causal convolution over (B, T, C) that continues from ``buf``, the previous call's last
    ``kernel − 1`` inputs (B, C, K − 1) -> (y (B, T, C), the new buf)."""
    if conv is None:
        return x, buf
    a = torch.cat([buf.to(x.dtype), x.transpose(1, 2)], 2)          # (B, C, K − 1 + T)
    return conv(a).transpose(1, 2), a[:, :, a.shape[2] - buf.shape[2]:]


def conv_stepper(conv: Optional[nn.Conv1d]):
    """``causal_conv`` for one step, as a function (x (B, C), buf) -> (y (B, C), the new buf): the window of
    the last ``kernel`` inputs times the kernel, summed; a few elementwise operations where a convolution
    call costs a hundred microseconds at batch 1 on a CPU (the same sums in another order: equal to float
    rounding)."""
    if conv is None:
        return lambda x, buf: (x, buf)
    w, b = conv.weight[:, 0], conv.bias                             # (C, K), (C,) or None

    def step(x, buf):
        window = torch.cat([buf.to(x.dtype), x[:, :, None]], 2)     # (B, C, K)
        y = (window * w).sum(-1)
        return (y + b if b is not None else y), window[:, :, 1:]
    return step


def _norm(norm: nn.RMSNorm):
    shape, w, eps = norm.normalized_shape, norm.weight, norm.eps
    return lambda x: F.rms_norm(x, shape, w, eps)


class ResidualBlock(nn.Module):
    """A pre-norm residual block around a recurrence (Griffin §2: temporal mixing, then an MLP):

        r = x + W_o mix(RMSNorm(x))         y = r + MLP(RMSNorm(r))

    Subclasses define ``build`` (their mixing layers, made between the first norm and the output
    projection, so that a seed initialises every block in its layers' order) and ``mix`` (the convolution
    and the recurrence, ``width`` wide), and set ``conv_width``, the width their convolution runs at. Options: ``expansion`` (recurrence width / block width), ``conv`` (the causal
    convolution's width; 1: none), ``mlp`` (GELU MLP width / block width).

    One step (T = 1, generation) takes ``stepper()``: the same block written for a single character as a
    function with the weights bound, no module calls, and its ``front`` (what depends on the block's input
    alone, which a caller may compute once per input and reuse); it equals the parallel forward to float
    rounding. Subclasses define ``mix_stepper``, the one-step ``mix``."""

    conv_width: int
    NAME = "block"                      # for error messages

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, expansion: float = 1.5,
                 conv: int = 4, mlp: int = 4, parallel: bool = True):
        super().__init__()
        if expansion <= 0 or conv < 1 or mlp < 1:
            raise ValueError(f"{self.NAME} options: expansion > 0, conv >= 1, mlp >= 1; got {expansion}, {conv}, {mlp}")
        H, D = hidden_size, max(1, round(hidden_size * expansion))
        self.input_size, self.hidden_size, self.width, self.kernel, self.parallel = input_size, H, D, conv, parallel
        self.inp = nn.Linear(input_size, H) if input_size != H else None
        self.norm1 = nn.RMSNorm(H)
        self.build(H, D, bias)
        self.out = nn.Linear(D, H, bias=False)
        self.norm2 = nn.RMSNorm(H)
        self.mlp = nn.Sequential(nn.Linear(H, mlp * H, bias=bias), nn.GELU(), nn.Linear(mlp * H, H, bias=bias))

    def build(self, H: int, D: int, bias: bool) -> None:
        raise NotImplementedError

    def mix(self, a: torch.Tensor, h: torch.Tensor, buf: torch.Tensor):
        """(B, T, H) normed inputs, the carried h (B, D) and convolution inputs -> (B, T, D) to project out,
        the last h, the new buf."""
        raise NotImplementedError

    def mix_stepper(self):
        """``(front, mix)`` for one step: ``front(x)`` what the mixing computes from the block's input x
        (B, H) alone, ``mix(front(x), h (B, D), buf)`` -> (B, D) to project out, the new h, the new buf."""
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.inp(x) if self.inp is not None else x            # (..., H): the residual stream

    def init_state(self, batch_size: int):
        w = self.out.weight
        return (w.new_zeros(batch_size, self.hidden_size), w.new_zeros(batch_size, self.width),
                w.new_zeros(batch_size, self.conv_width, self.kernel - 1))

    def output(self, state) -> torch.Tensor:
        return state[0]

    def stepper(self):
        """One step as a function ``step(x, state, front=None) -> (y, state)``: x (B, H) the block's input
        (after ``project``), ``front`` = ``step.front(x)`` if the caller has it. Bound to the weights as
        they are now: build it again after moving the module or replacing its parameters."""
        front, mix = self.mix_stepper()
        out, norm2 = self.out.weight, _norm(self.norm2)
        (up, ub), (down, db) = (self.mlp[0].weight, self.mlp[0].bias), (self.mlp[2].weight, self.mlp[2].bias)

        def step(x, state, f=None):
            mixed, h, buf = mix(front(x) if f is None else f, state[1], state[2])
            r = x + F.linear(mixed.to(x.dtype), out)
            y = r + F.linear(F.gelu(F.linear(norm2(r), up, ub)), down, db)
            return y, (y, h, buf)
        step.front = front
        return step

    def unroll(self, xs: torch.Tensor, state):
        # xs (B, T, H) -> y (B, T, H), state (y_T, h_T, the convolution's last inputs)
        if xs.shape[1] == 1:                                          # a single step (generation): its own form
            y, state = self.stepper()(xs[:, 0], state)
            return y[:, None], state
        _, h, buf = state
        mixed, h, buf = self.mix(self.norm1(xs), h, buf)
        r = xs + self.out(mixed.to(xs.dtype))
        y = r + self.mlp(self.norm2(r))
        return y, (y[:, -1], h, buf)

    def recur(self, xp_t: torch.Tensor, state):
        return self.unroll(xp_t[:, None], state)[1]

    def forward(self, x_t: torch.Tensor, state):
        return self.recur(self.project(x_t), state)


class MinGRUBlock(ResidualBlock):
    """One residual minGRU block: the causal convolution on the block's input, then minGRU ``width`` wide."""

    NAME = "minGRU"

    def build(self, H, D, bias):
        self.conv_width = H
        self.conv = nn.Conv1d(H, H, self.kernel, groups=H, bias=bias) if self.kernel > 1 else None
        self.to_kx = nn.Linear(H, 2 * D, bias=bias)                  # W_z and W_h in one matmul

    def mix(self, a, h, buf):
        a, buf = causal_conv(self.conv, a, buf)
        k, cand = self.to_kx(a).float().chunk(2, -1)                  # the scan in float32, also under autocast
        hs = (mingru_scan if self.parallel else mingru_loop)(k, cand, h.float())
        return hs, hs[:, -1], buf

    def mix_stepper(self):
        conv, w, b, D = conv_stepper(self.conv), self.to_kx.weight, self.to_kx.bias, self.width

        def mix(a, h, buf):
            a, buf = conv(a, buf)
            k, cand = F.linear(a, w, b).float().split(D, -1)
            h = torch.lerp(h.float(), g(cand), torch.sigmoid(k))      # (1 − z) h + z h̃
            return h, h, buf
        return _norm(self.norm1), mix


class RGLRUBlock(ResidualBlock):
    """One residual block around Griffin's recurrent block (De et al. 2024, arXiv 2402.19427, §2.4 and
    fig. 2): two branches of the recurrence's width, a GELU gate and a causal convolution then the
    Real-Gated Linear Recurrent Unit,

        r_t = σ(W_a u_t + b_a)     i_t = σ(W_x u_t + b_x)     log a_t = c r_t log σ(Λ)     (c = 8)
        h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ u_t)

    multiplied and projected back: W_o (h ⊙ GELU(gate)). Λ starts where a^c is uniform in [0.9, 0.999]
    (§2.4). The paper's W_a and W_x are block-diagonal; here they are dense (one matmul, a CPU's widths).
    √(1 − a²) is bounded below by 1e-3 so that its gradient stays finite as a → 1 (as the authors'
    recurrentgemma bounds that derivative). The recurrence runs as ``linear_scan`` (parallel) or
    ``linear_loop``, in float32."""

    C = 8.0
    NAME = "RG-LRU"

    def build(self, H, D, bias):
        self.conv_width = D
        self.to_ug = nn.Linear(H, 2 * D, bias=bias)                  # the recurrence's input u and the gate branch
        self.conv = nn.Conv1d(D, D, self.kernel, groups=D, bias=bias) if self.kernel > 1 else None
        self.to_ri = nn.Linear(D, 2 * D, bias=bias)                  # W_a and W_x in one matmul
        a = torch.empty(D).uniform_(0.9, 0.999) ** (1 / self.C)      # a^c ~ U[0.9, 0.999]
        self.decay = nn.Parameter(a.log() - (-a).log1p())            # Λ = logit(a)

    @staticmethod
    def gated(ri: torch.Tensor, u: torch.Tensor, c_log_decay: torch.Tensor):
        """log a_t and the recurrence's input √(1 − a_t²) ⊙ i_t ⊙ u_t from the pre-activations of r and i
        (..., 2D) and u (..., D), all float32; ``c_log_decay`` is c log σ(Λ)."""
        r, i = torch.sigmoid(ri).chunk(2, -1)
        log_a = r * c_log_decay                                       # ≤ 0
        scale = (-torch.expm1(2 * log_a)).clamp_min(1e-6).sqrt()      # √(1 − a²)
        return log_a, scale * i * u

    def mix(self, a, h, buf):
        u, gate = self.to_ug(a).chunk(2, -1)
        u, buf = causal_conv(self.conv, u, buf)
        u = u.float()                                                 # the recurrence in float32, also under autocast
        log_a, b = self.gated(self.to_ri(u).float(), u, self.C * F.logsigmoid(self.decay.float()))
        hs = (linear_scan if self.parallel else linear_loop)(log_a, b, h.float())
        return hs * F.gelu(gate.float()), hs[:, -1], buf

    def mix_stepper(self):
        norm1, conv, D = _norm(self.norm1), conv_stepper(self.conv), self.width
        ug, ugb, ri, rib = self.to_ug.weight, self.to_ug.bias, self.to_ri.weight, self.to_ri.bias
        c_log_decay = self.C * F.logsigmoid(self.decay.float())   # c log σ(Λ), once

        def front(x):                                                 # u and GELU(gate): the input's alone
            u, gate = F.linear(norm1(x), ug, ugb).split(D, -1)
            return u, F.gelu(gate.float())

        def mix(f, h, buf):
            u, gate = f
            u, buf = conv(u, buf)
            u = u.float()
            log_a, b = self.gated(F.linear(u, ri, rib).float(), u, c_log_decay)
            h = torch.addcmul(b, log_a.exp(), h.float())              # a h + √(1 − a²) (i ⊙ u)
            return h * gate, h, buf
        return front, mix
