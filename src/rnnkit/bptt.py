"""Backpropagation through time for a whole LSTM layer, written out by hand.

``cells.LSTMCell.recur`` states the forward equations; autograd can differentiate them step by step, but
at small batches that costs about twenty tensor operations per time step (forward, backward and the
bookkeeping between them), each a few microseconds of dispatch whatever its size. ``lstm_layer`` computes
the same forward with seven operations per step and the backward with five, from the equations below.
Everything that does not depend on the recurrence is done for all steps at once: the input projection
(outside, one matmul), the gate derivatives (after the forward, a few whole-sequence operations), and the
weight gradient dW_hh (one matmul over all steps, not one outer product per step).

Forward, per step t, with a_t = xp_t + W_hh h_{t-1} (xp_t = W_ih x_t + b_ih + b_hh, gates i f g o):

    i, f, o = σ(a_i, a_f, a_o)    g = tanh(a_g)    c_t = f ⊙ c_{t-1} + i ⊙ g    h_t = o ⊙ tanh(c_t)

Backward, per step from the last, with δh the gradient reaching h_t (from the output at t and from step
t + 1) and δc the one reaching c_t from step t + 1; k = tanh(c_t):

    δc    += δh ⊙ o ⊙ (1 - k²)
    δa_o   = δh ⊙ k ⊙ o (1 - o)
    δa_i   = δc ⊙ g ⊙ i (1 - i)      δa_f = δc ⊙ c_{t-1} ⊙ f (1 - f)      δa_g = δc ⊙ i ⊙ (1 - g²)
    δc     ← δc ⊙ f                                   (the gradient reaching c_{t-1})
    δh     ← δout_{t-1} + δa W_hh                     (the gradient reaching h_{t-1})

then dW_hh = Σ_t δa_tᵀ h_{t-1} and d xp_t = δa_t. The factors that multiply δh and δc (o (1 - k²),
k o (1 - o), g i (1 - i), ...) are computed for every step at once before the loop. Checked against
autograd through ``LSTMCell`` with ``torch.autograd.gradcheck`` in float64 (tests/test_bptt.py).

At batch 1 even making a view of step t of a buffer costs as much as the arithmetic of the step (about a
microsecond to make and another to free, and a step needs a dozen). So the buffers of a layer, with their
per-step views, live in a ``_Workspace`` that is made once per shape and reused, for problems small
enough that this matters (``_CACHE_BYTES``). A workspace is lent to one forward and given back by its
backward (or when that graph is dropped unused); outputs are copies, never the workspace's own memory. A
second backward of the same graph (``retain_graph=True``) after the workspace has been lent again fails
with autograd's "modified by an inplace operation" error instead of using overwritten values.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import torch
from torch.autograd.function import once_differentiable

_CACHE_BYTES = 16 << 20       # workspaces up to this size are kept and reused
_CACHE_SHAPES = 8             # ... for at most this many shapes (least recently used dropped first)


def usable(xp: torch.Tensor) -> bool:
    """Where ``lstm_layer`` stands in for the cell-by-cell loop: xp (B, T, 4H) small enough for its
    workspace to be kept (there the per-step overhead it removes dominates; at large batches autograd's
    loop is as fast or faster, and needs no extra passes over big buffers), in plain float32/64 eager
    execution: under autocast the step's ``out=`` operations would meet mixed dtypes, and under
    torch.compile the cell-by-cell graph is what Inductor fuses best.
    """
    B, T, G = xp.shape
    return (xp.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(xp.device.type)
            and not torch.compiler.is_compiling()
            and _Workspace.size(T, B, G // 4, xp.element_size()) <= _CACHE_BYTES)


def lstm_layer(xp: torch.Tensor, weight_hh: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
    """One LSTM layer over a whole sequence. xp (B, T, 4H): the projected inputs with both biases;
    weight_hh (4H, H); h0, c0 (B, H). Returns out (B, T, H), h_T, c_T."""
    will_backward = torch.is_grad_enabled() and any(t.requires_grad for t in (xp, weight_hh, h0, c0))
    return _LSTMLayer.apply(xp, weight_hh, h0, c0, will_backward)


class _Workspace:
    """Every buffer one layer's forward and backward write, with the views of each step made up front.

    The backward keeps its gate gradients in the order o i f g, followed by the gradient reaching c: one
    row of D per step, [δa_o | δa_i δa_f δa_g | δc_{t-1}]. Writing δc_t = δc' + δh ⊙ kc (δc' from step
    t + 1, kc = o (1 - k²)), the whole row is δh ⊙ k5 + [0 | δc' ⊙ k4] with k4 = [g i (1 - i),
    c_{t-1} f (1 - f), i (1 - g²), f] and k5 = [k o (1 - o) | kc ⊙ k4]: two operations for the five blocks.
    """

    def __init__(self, T: int, B: int, H: int, like: torch.Tensor):
        self.shape, self.like = (T, B, H), like
        new = lambda *shape: like.new_empty(shape)
        G = 4 * H
        self.nbytes = self.size(T, B, H, like.element_size())
        # forward: the inputs (which become a_t in place), h_0..h_T, c_0..c_T, i f g o, tanh(c_t)
        self.xp, self.hs, self.cs = new(T, B, G), new(T + 1, B, H), new(T + 1, B, H)
        self.acts, self.ks = new(T, B, G), new(T, B, H)
        self.a_, self.h_, self.c_, self.k_ = (x.unbind(0) for x in (self.xp, self.hs, self.cs, self.ks))
        self.a_g_ = self.xp[..., 2 * H:3 * H].unbind(0)
        self.s_ = self.acts.unbind(0)
        self.i_, self.f_, self.g_, self.o_ = (self.acts[..., n * H:(n + 1) * H].unbind(0) for n in range(4))
        self.backward_ready = False
        self.lent_to = None                                          # weakref to the graph's token, or None

    @staticmethod
    def size(T: int, B: int, H: int, element_size: int) -> int:
        return (31 * T + 12) * B * H * element_size                 # forward and backward buffers, bytes

    def ready_backward(self) -> None:
        if self.backward_ready:
            return
        T, B, H = self.shape
        new = lambda *shape: self.like.new_empty(shape)
        # incoming gradients (which become δh in place), the factors of the equations, the rows of D
        # (one more for δc_T)
        self.d_out, self.kc, self.k4, self.k5 = new(T, B, H), new(T, B, H), new(T, B, 4, H), new(T, B, 5, H)
        self.D = new(T + 1, B, 5 * H)
        self.d_out_, self.k4_, self.k5_ = (x.unbind(0) for x in (self.d_out, self.k4, self.k5))
        self.dh3_ = self.d_out.unsqueeze(2).unbind(0)                # (B, 1, H): δh for five blocks at once
        self.da = self.D[:T, :, :4 * H]                              # δa in the order o i f g
        self.da_ = self.da.unbind(0)
        self.d5_ = self.D[:T].unflatten(-1, (5, H)).unbind(0)        # [δa_o, δa_i, δa_f, δa_g, δc_{t-1}]
        self.d4_ = self.D[:T, :, H:].unflatten(-1, (4, H)).unbind(0)  # [δa_i, δa_f, δa_g, δc_{t-1}]
        self.dc = self.D[..., 4 * H:]                                # δc_t lives in row t (row T: δc_T)
        self.dc3_ = self.dc.unsqueeze(2).unbind(0)                   # (B, 1, H) views
        self.backward_ready = True

    def free(self) -> bool:
        return self.lent_to is None or self.lent_to() is None


_workspaces: "OrderedDict[tuple, list[_Workspace]]" = OrderedDict()


def _workspace(T: int, B: int, H: int, like: torch.Tensor) -> _Workspace:
    key = (T, B, H, like.dtype, like.device)
    pool = _workspaces.get(key)
    if pool is not None:
        _workspaces.move_to_end(key)
        for ws in pool:
            if ws.free():
                return ws
    ws = _Workspace(T, B, H, like)
    if ws.nbytes <= _CACHE_BYTES:
        _workspaces.setdefault(key, []).append(ws)
        while len(_workspaces) > _CACHE_SHAPES:
            _workspaces.popitem(last=False)
    return ws


class _Token:
    """Lives as long as the autograd graph that may still call backward."""


class _LSTMLayer(torch.autograd.Function):

    @staticmethod
    def forward(ctx, xp, weight_hh, h0, c0, will_backward):
        B, T, G = xp.shape
        H = G // 4
        ws = _workspace(T, B, H, xp)
        if will_backward:
            ctx.token = _Token()
            ws.lent_to = weakref.ref(ctx.token)
        ctx.ws = ws
        ws.xp.copy_(xp.transpose(0, 1))
        ws.hs[0].copy_(h0)
        ws.cs[0].copy_(c0)
        h_, c_, k_, s_, i_, f_, g_, o_ = ws.h_, ws.c_, ws.k_, ws.s_, ws.i_, ws.f_, ws.g_, ws.o_
        a_g_, w_t = ws.a_g_, weight_hh.t().contiguous()
        for t, a in enumerate(ws.a_):
            a.addmm_(h_[t], w_t)                                     # a_t = xp_t + W_hh h_{t-1}
            torch.sigmoid(a, out=s_[t])                              # σ of all four blocks ...
            torch.tanh(a_g_[t], out=g_[t])                           # ... then g's block becomes tanh(a_g)
            torch.mul(f_[t], c_[t], out=c_[t + 1]).addcmul_(i_[t], g_[t])   # c_t = f ⊙ c_{t-1} + i ⊙ g
            torch.tanh(c_[t + 1], out=k_[t])
            torch.mul(o_[t], k_[t], out=h_[t + 1])                   # h_t = o ⊙ tanh(c_t)
        # Saved so that autograd's version check catches a workspace rewritten before this graph's backward.
        ctx.save_for_backward(weight_hh, ws.hs, ws.cs, ws.acts, ws.ks)
        out = ws.hs[1:].transpose(0, 1).clone(memory_format=torch.contiguous_format)   # (B, T, H)
        return out, ws.hs[T].clone(), ws.cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hT, d_cT):
        weight_hh, hs, cs, acts, ks = ctx.saved_tensors
        ws = ctx.ws
        ws.ready_backward()
        T, B, G = acts.shape
        H = G // 4
        i, f, g, o = acts.split(H, dim=2)                            # (T, B, H) each
        # The factors of the backward equations, for every step at once (see _Workspace).
        torch.mul(o, 1 - ks * ks, out=ws.kc)                         # kc = o (1 - k²)
        k_i, k_f, k_g, k_c = ws.k4.unbind(2)
        torch.mul(g * i, 1 - i, out=k_i)                             # δa_i = δc ⊙ g i (1 - i)
        torch.mul(cs[:-1] * f, 1 - f, out=k_f)                       # δa_f = δc ⊙ c_{t-1} f (1 - f)
        torch.mul(i, 1 - g * g, out=k_g)                             # δa_g = δc ⊙ i (1 - g²)
        k_c.copy_(f)                                                 # δc_{t-1} = δc ⊙ f
        torch.mul(ks * o, 1 - o, out=ws.k5[:, :, 0])                 # δa_o = δh ⊙ k o (1 - o)
        torch.mul(ws.k4, ws.kc.unsqueeze(2), out=ws.k5[:, :, 1:])
        w = torch.cat([weight_hh[3 * H:], weight_hh[:3 * H]])       # W_hh's rows in the order o i f g
        if d_out is None:
            ws.d_out.zero_()
        else:
            ws.d_out.copy_(d_out.transpose(0, 1))
        dc, dh3_, dc3_, da_, d5_, d4_ = ws.dc, ws.dh3_, ws.dc3_, ws.da_, ws.d5_, ws.d4_
        k4_, k5_, dh_ = ws.k4_, ws.k5_, ws.d_out_                    # row t of d_out becomes δh_t
        if d_hT is not None:
            dh_[T - 1].add_(d_hT)
        if d_cT is None:
            dc[T].zero_()
        else:
            dc[T].copy_(d_cT)
        for t in range(T - 1, -1, -1):
            torch.mul(dh3_[t], k5_[t], out=d5_[t])                    # the δh terms of all five blocks
            d4_[t].addcmul_(dc3_[t + 1], k4_[t])                      # + the δc' terms
            if t:
                dh_[t - 1].addmm_(da_[t], w)                          # δh_{t-1} = δout_{t-1} + δa W_hh
        d_h0 = da_[0] @ w
        d_w = ws.da.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)       # Σ_t δa_tᵀ h_{t-1}, rows o i f g
        d_w = torch.cat([d_w[H:], d_w[:H]])                          # back to i f g o
        d_xp = torch.cat([ws.da[..., H:], ws.da[..., :H]], dim=2).transpose(0, 1)   # (B, T, 4H), i f g o
        d_c0 = dc[0].clone()
        ws.lent_to = None                                            # this graph is done with the workspace
        return d_xp, d_w, d_h0, d_c0, None
