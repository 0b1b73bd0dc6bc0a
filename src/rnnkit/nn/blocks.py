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

The block around it follows what made these cells work for language modelling in the papers and in
lucidrains' minGRU-pytorch (pre-norm residual blocks, De et al. 2024, "Griffin", arXiv 2402.19427, §2):

    r = x + W_o minGRU(conv(RMSNorm(x)))         y = r + MLP(RMSNorm(r))

with a short causal depthwise convolution before the recurrence (its last inputs are carried as state, so
it too continues across chunks and steps), an expansion factor for the recurrence's width, and a GELU MLP.

A block is a cell of ``recurrent.Unrolled``: ``project`` lifts the input to the block's width,
``unroll(x, state)`` runs the block over (B, T, H), and its state is ``(y, h, conv)``: the block's last
output (the first part is a layer's output, as for every cell), the recurrence, and the convolution's last
``conv − 1`` inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x): log(x + 0.5) for x ≥ 0, log σ(x) = −softplus(−x) below."""
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def g(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


SCAN_CHUNK = 64      # steps scanned at once; the chunks follow one another carrying h (see mingru_scan)


def mingru_scan(k: torch.Tensor, x: torch.Tensor, h0: torch.Tensor, chunk: int = SCAN_CHUNK) -> torch.Tensor:
    """Every h_t, in log space: k, x (B, T, D) gate and candidate pre-activations, h0 (B, D) > 0 or 0.

    Each chunk of ``chunk`` steps is one parallel scan, started from the previous chunk's last h. One scan
    over thousands of steps adds a large cumulative log-decay a* to a large log-sum-exp of the opposite sign,
    and float32 loses about |a*| · 6e-8 of relative precision there (0.5 % at T = 4,096 with strong gates);
    chunks bound |a*| by the chunk's length, at the cost of T / chunk sequential steps."""
    if k.shape[1] <= chunk:
        return _scan(k, x, h0)
    out = []
    for i in range(0, k.shape[1], chunk):
        out.append(_scan(k[:, i:i + chunk], x[:, i:i + chunk], h0))
        h0 = out[-1][:, -1]
    return torch.cat(out, 1)


def _scan(k: torch.Tensor, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    log_a = -F.softplus(k)                                          # log(1 − z)
    log_b = -F.softplus(-k) + log_g(x)                              # log(z ⊙ h̃)
    a_star = F.pad(log_a.cumsum(1), (0, 0, 1, 0))                   # (B, T+1, D): 0, a_1, a_1 + a_2, ...
    log_h0 = h0.clamp_min(torch.finfo(h0.dtype).tiny).log()[:, None]
    log_h = a_star + torch.logcumsumexp(torch.cat([log_h0, log_b], 1) - a_star, dim=1)
    return log_h[:, 1:].exp()                                       # (B, T, D)


def mingru_loop(k: torch.Tensor, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The reference: h_t = (1 − z_t) h_{t−1} + z_t h̃_t, one step after another."""
    z, cand = torch.sigmoid(k), g(x)
    out = []
    for t in range(k.shape[1]):
        h = torch.lerp(h, cand[:, t], z[:, t])                      # (1 − z) h + z h̃
        out.append(h)
    return torch.stack(out, 1)


class MinGRUBlock(nn.Module):
    """One residual minGRU block (see the module's docstring); options: ``expansion`` (recurrence width /
    block width), ``conv`` (the causal convolution's width; 1: none), ``mlp`` (MLP width / block width)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, expansion: float = 1.5,
                 conv: int = 4, mlp: int = 4, parallel: bool = True):
        super().__init__()
        if expansion <= 0 or conv < 1 or mlp < 1:
            raise ValueError(f"minGRU options: expansion > 0, conv >= 1, mlp >= 1; got {expansion}, {conv}, {mlp}")
        H, D = hidden_size, max(1, round(hidden_size * expansion))
        self.input_size, self.hidden_size, self.width, self.kernel, self.parallel = input_size, H, D, conv, parallel
        self.inp = nn.Linear(input_size, H) if input_size != H else None
        self.norm1 = nn.RMSNorm(H)
        self.conv = nn.Conv1d(H, H, conv, groups=H, bias=bias) if conv > 1 else None
        self.to_kx = nn.Linear(H, 2 * D, bias=bias)                  # W_z and W_h in one matmul
        self.out = nn.Linear(D, H, bias=False)
        self.norm2 = nn.RMSNorm(H)
        self.mlp = nn.Sequential(nn.Linear(H, mlp * H, bias=bias), nn.GELU(), nn.Linear(mlp * H, H, bias=bias))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.inp(x) if self.inp is not None else x            # (..., H): the residual stream

    def init_state(self, batch_size: int):
        w = self.to_kx.weight
        return (w.new_zeros(batch_size, self.hidden_size), w.new_zeros(batch_size, self.width),
                w.new_zeros(batch_size, self.hidden_size, self.kernel - 1))

    def output(self, state) -> torch.Tensor:
        return state[0]

    def unroll(self, xs: torch.Tensor, state):
        # xs (B, T, H) -> y (B, T, H), state (y_T, h_T, the convolution's last inputs)
        _, h, buf = state
        a = self.norm1(xs)
        if self.conv is not None:
            a = torch.cat([buf.to(a.dtype), a.transpose(1, 2)], 2)   # (B, H, K − 1 + T): causal, carried
            buf = a[:, :, a.shape[2] - (self.kernel - 1):]
            a = self.conv(a).transpose(1, 2)                          # (B, T, H)
        k, cand = self.to_kx(a).float().chunk(2, -1)                  # the scan in float32, also under autocast
        hs = (mingru_scan if self.parallel else mingru_loop)(k, cand, h.float())
        r = xs + self.out(hs.to(xs.dtype))
        y = r + self.mlp(self.norm2(r))
        return y, (y[:, -1], hs[:, -1], buf)

    def recur(self, xp_t: torch.Tensor, state):
        return self.unroll(xp_t[:, None], state)[1]

    def forward(self, x_t: torch.Tensor, state):
        return self.recur(self.project(x_t), state)
