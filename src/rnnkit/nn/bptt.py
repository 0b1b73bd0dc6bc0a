"""Backpropagation through time for a whole LSTM layer, written out by hand (CPU, small batches).

``cells.LSTMCell.recur`` states the forward equations; autograd can differentiate them step by step, but
at small batches that costs about twenty tensor operations per time step (forward, backward and the
bookkeeping between them), each a few microseconds of dispatch whatever its size. ``lstm_layer`` computes
the same forward with eight operations per step and the backward with four, from the equations below.
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

then dW_hh = Σ_t δa_tᵀ h_{t-1} and d xp_t = δa_t. Checked against autograd through ``LSTMCell`` with
``torch.autograd.gradcheck`` in float64 (tests/nn/test_bptt.py).

What makes it fast at batch 1, where a step's arithmetic is a few hundred multiply-adds:

- The sigmoid is torch's; the other elementwise steps are NumPy ufuncs on the same memory, which cost
  well under a microsecond each where a torch call costs one and a half. The recurrent matmuls are
  torch's too, except at batch 1 with up to ``_GEMV_ELEMENTS`` weights, where NumPy's matrix-vector
  product (OpenBLAS, on one thread at that size) is 40 % cheaper than torch's call into MKL.
- The factors that multiply δh and δc are computed for every step at once before the backward loop, and
  arranged so that two operations make a step's five gradient blocks (see ``_Workspace``).
- Even making a view of step t of a buffer costs as much as a step's arithmetic, so the buffers of a layer,
  with their per-step views, live in a ``_Workspace`` made once per shape and reused (each thread has its
  own pool of them). A workspace is lent
  to one forward and given back by its backward (or when that graph is dropped unused); outputs are
  copies, never the workspace's own memory. A graph whose workspace was lent again before its backward
  (``retain_graph=True`` and a second backward) gets an error, not gradients of someone else's forward.

Only used where it pays (``usable``): on the CPU, for workspaces up to ``_CACHE_BYTES``. Large batches
spend their time in the matmuls, and there autograd's loop is as fast and needs no extra buffers.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch
from torch.autograd.function import once_differentiable

_CACHE_BYTES = 16 << 20       # workspaces up to this size are kept and reused, and lstm_layer is used
_GEMV_ELEMENTS = 1 << 18      # batch-1 recurrent matmuls up to this many weights go through NumPy
_CACHE_SHAPES = 8             # ... for at most this many shapes (least recently used dropped first)


def usable(xp: torch.Tensor) -> bool:
    """Where ``lstm_layer`` stands in for the cell-by-cell loop: xp (B, T, 4H) on the CPU in float32/64,
    small enough for its workspace to be kept, in plain eager execution (under autocast the ``out=``
    operations would meet mixed dtypes; under torch.compile the cell-by-cell graph is what Inductor
    fuses best)."""
    B, T, G = xp.shape
    return (xp.device.type == "cpu" and xp.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and _Workspace.size(T, B, G // 4, xp.element_size()) <= _CACHE_BYTES)


def lstm_layer(xp: torch.Tensor, weight_hh: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
    """One LSTM layer over a whole sequence. xp (B, T, 4H): the projected inputs with both biases;
    weight_hh (4H, H); h0, c0 (B, H). Returns out (B, T, H), h_T, c_T."""
    will_backward = torch.is_grad_enabled() and any(t.requires_grad for t in (xp, weight_hh, h0, c0))
    return _LSTMLayer.apply(xp, weight_hh, h0, c0, will_backward)


def _steps(x: torch.Tensor) -> list:
    """NumPy views of x[0], x[1], ... (the same memory)."""
    return list(x.numpy())


class _Workspace:
    """Every buffer one layer's forward and backward write, with the views of each step made up front:
    torch views (suffix ``_t``) for the torch operations, NumPy views for the ufuncs.

    The backward keeps its gate gradients in the order o i f g, followed by the gradient reaching c: one
    row of D per step, [δa_o | δa_i δa_f δa_g | δc_{t-1}]. Writing δc_t = δc' + δh ⊙ kc (δc' from step
    t + 1, kc = o (1 - k²)), the whole row is δh ⊙ k5 + [0 | δc' ⊙ k4] with k4 = [g i (1 - i),
    c_{t-1} f (1 - f), i (1 - g²), f] and k5 = [k o (1 - o) | kc ⊙ k4]: two products for the five blocks.
    """

    def __init__(self, T: int, B: int, H: int, like: torch.Tensor):
        self.shape, self.nbytes = (T, B, H), self.size(T, B, H, like.element_size())
        self.dtype, self.device = like.dtype, like.device           # not ``like`` itself: no input kept alive
        new = self.new
        G = 4 * H
        # forward: the inputs (which become a_t in place), h_0..h_T, c_0..c_T, i f g o, tanh(c_t)
        self.xp, self.hs, self.cs = new(T, B, G), new(T + 1, B, H), new(T + 1, B, H)
        self.acts, self.ks, self.tmp = new(T, B, G), new(T, B, H), new(B, H)
        self.a_t, self.h_t, self.s_t = self.xp.unbind(0), self.hs.unbind(0), self.acts.unbind(0)
        self.a_g = _steps(self.xp[..., 2 * H:3 * H])
        # At batch 1 the recurrent matmuls are matrix-vector products: NumPy's (OpenBLAS, one thread at
        # these sizes) takes 4.5 µs where torch's MKL call takes 7.5 at 512x128. Larger ones stay with
        # torch: OpenBLAS would start its own thread pool there, which fights torch's OpenMP threads.
        self.gemv = B == 1 and G * H <= _GEMV_ELEMENTS
        self.a, self.tmp_g = _steps(self.xp), new(B, G).numpy()
        self.h, self.c, self.k = _steps(self.hs), _steps(self.cs), _steps(self.ks)
        self.i, self.f, self.g, self.o = (_steps(self.acts[..., n * H:(n + 1) * H]) for n in range(4))
        self.backward_ready = False
        self.lent_to = None          # weakref to the token of the graph whose backward needs this, or None
        self.forwards = 0            # forward passes run in this workspace: a graph checks it saw the last

    def new(self, *shape: int) -> torch.Tensor:
        # Normal tensors even when made under inference_mode: the workspace outlives that block.
        with torch.inference_mode(False):
            return torch.empty(shape, dtype=self.dtype, device=self.device)

    @staticmethod
    def size(T: int, B: int, H: int, element_size: int) -> int:
        return (31 * T + 12) * B * H * element_size                 # forward and backward buffers, bytes

    def ready_backward(self) -> None:
        if self.backward_ready:
            return
        T, B, H = self.shape
        new = self.new
        # incoming gradients (which become δh in place), the factors of the equations, and the rows of D
        # (one more for δc_T)
        self.d_out, self.kc, self.k4, self.k5 = new(T, B, H), new(T, B, H), new(T, B, 4, H), new(T, B, 5, H)
        self.D, self.tmp4 = new(T + 1, B, 5 * H), new(B, 4, H)
        self.dh_t, self.dh = self.d_out.unbind(0), _steps(self.d_out)
        self.da = self.D[:T, :, :4 * H]                              # δa in the order o i f g
        self.da_t, self.da_n = self.da.unbind(0), _steps(self.da)
        self.dc = self.D[..., 4 * H:]                                # δc_t lives in row t (row T: δc_T)
        self.dh3 = _steps(self.d_out.unsqueeze(2))                   # (B, 1, H): δh for five blocks at once
        self.dc3 = _steps(self.dc.unsqueeze(2))
        self.k4_, self.k5_ = _steps(self.k4), _steps(self.k5)
        self.d5 = _steps(self.D[:T].unflatten(-1, (5, H)))          # [δa_o, δa_i, δa_f, δa_g, δc_{t-1}]
        self.d4 = _steps(self.D[:T, :, H:].unflatten(-1, (4, H)))   # [δa_i, δa_f, δa_g, δc_{t-1}]
        self.backward_ready = True

    def free(self) -> bool:
        return self.lent_to is None or self.lent_to() is None


class _Pools(threading.local):
    """Each thread keeps its own workspaces: two threads running a layer at once never share a buffer."""

    def __init__(self) -> None:
        self.by_shape: "OrderedDict[tuple, list[_Workspace]]" = OrderedDict()


_pools = _Pools()


def workspaces() -> "OrderedDict[tuple, list[_Workspace]]":
    """This thread's workspaces by (T, B, H, dtype), least recently used first."""
    return _pools.by_shape


def _workspace(T: int, B: int, H: int, like: torch.Tensor) -> _Workspace:
    key = (T, B, H, like.dtype)
    _workspaces = workspaces()
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
        ws.forwards += 1
        if will_backward:
            ctx.token = _Token()
            ws.lent_to = weakref.ref(ctx.token)
        ctx.ws, ctx.forward_number = ws, ws.forwards
        ws.xp.copy_(xp.transpose(0, 1))
        ws.hs[0].copy_(h0)
        ws.cs[0].copy_(c0)
        a_t, h_t, s_t, w_t = ws.a_t, ws.h_t, ws.s_t, weight_hh.t().contiguous()
        a_g, h, c, k, i, f, g, o, tmp = ws.a_g, ws.h, ws.c, ws.k, ws.i, ws.f, ws.g, ws.o, ws.tmp.numpy()
        a, tmp_g, gemv, w_n = ws.a, ws.tmp_g, ws.gemv, w_t.numpy()
        for t in range(T):
            if gemv:                                                 # a_t = xp_t + W_hh h_{t-1}
                np.add(a[t], np.dot(h[t], w_n, out=tmp_g), out=a[t])
            else:
                a_t[t].addmm_(h_t[t], w_t)
            torch.sigmoid(a_t[t], out=s_t[t])                        # σ of all four blocks ...
            np.tanh(a_g[t], out=g[t])                                # ... then g's block becomes tanh(a_g)
            np.multiply(f[t], c[t], out=c[t + 1])                    # c_t = f ⊙ c_{t-1} + i ⊙ g
            np.add(c[t + 1], np.multiply(i[t], g[t], out=tmp), out=c[t + 1])
            np.tanh(c[t + 1], out=k[t])
            np.multiply(o[t], k[t], out=h[t + 1])                    # h_t = o ⊙ tanh(c_t)
        ctx.save_for_backward(weight_hh)
        out = ws.hs[1:].transpose(0, 1).clone(memory_format=torch.contiguous_format)   # (B, T, H)
        return out, ws.hs[T].clone(), ws.cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hT, d_cT):
        (weight_hh,) = ctx.saved_tensors
        ws = ctx.ws
        if ws.forwards != ctx.forward_number:
            raise RuntimeError("rnnkit's LSTM layer ran forward again on this shape before this graph's "
                               "backward; call backward before the next forward, or use retain_graph only "
                               "with the fused backend")
        ws.ready_backward()
        T, B, H = ws.shape
        i, f, g, o = ws.acts.split(H, dim=2)                         # (T, B, H) each
        ks, cs = ws.ks, ws.cs
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
        if d_hT is not None:
            ws.dh_t[T - 1].add_(d_hT)
        if d_cT is None:
            ws.dc[T].zero_()
        else:
            ws.dc[T].copy_(d_cT)
        dh_t, da_t, dh3, dc3, d5, d4, k4, k5 = ws.dh_t, ws.da_t, ws.dh3, ws.dc3, ws.d5, ws.d4, ws.k4_, ws.k5_
        tmp4, tmp, dh, da, gemv, w_n = ws.tmp4.numpy(), ws.tmp.numpy(), ws.dh, ws.da_n, ws.gemv, w.numpy()
        for t in range(T - 1, -1, -1):                               # row t of d_out becomes δh_t
            np.multiply(dh3[t], k5[t], out=d5[t])                    # the δh terms of all five blocks
            np.add(d4[t], np.multiply(dc3[t + 1], k4[t], out=tmp4), out=d4[t])   # + the δc' terms
            if t and gemv:                                           # δh_{t-1} = δout_{t-1} + δa W_hh
                np.add(dh[t - 1], np.dot(da[t], w_n, out=tmp), out=dh[t - 1])
            elif t:
                dh_t[t - 1].addmm_(da_t[t], w)
        d_h0 = da_t[0] @ w
        d_w = ws.da.flatten(0, 1).t() @ ws.hs[:-1].flatten(0, 1)    # Σ_t δa_tᵀ h_{t-1}, rows o i f g
        d_w = torch.cat([d_w[H:], d_w[:H]])                          # back to i f g o
        d_xp = torch.cat([ws.da[..., H:], ws.da[..., :H]], dim=2).transpose(0, 1)   # (B, T, 4H), i f g o
        d_c0 = ws.dc[0].clone()
        ws.lent_to = None                                            # this graph is done with the workspace
        return d_xp, d_w, d_h0, d_c0, None
