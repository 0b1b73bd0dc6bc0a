"""Data-parallel training across processes started by ``torchrun``: the process group, the ``World`` the
trainer shares its decisions through, and each process's share of the batches.

With B global streams over W processes, process r reads streams [r·B/W, (r+1)·B/W) of the single-process
layout and carries its own hidden state for them; DistributedDataParallel averages the gradients, so a
step equals the single-process step on all B streams (the mean loss over equal shares). Every process
draws the same batches from the same seeded iterator and keeps its rows, so batch order, random chunks and
epoch offsets agree without any exchange. Checkpoints hold the hidden state gathered into the
single-process layout, so a run resumes at any W that divides B.
"""

from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..data.streams import Batch
from .trainer import World

TIMEOUT_S = float(os.environ.get("RNNKIT_DIST_TIMEOUT", "600"))   # a collective waiting longer fails


def launched() -> bool:
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def writes() -> bool:
    """Whether this process speaks for the job: the only one, or rank 0 of torchrun's."""
    return int(os.environ.get("RANK", "0")) == 0


def restarted() -> bool:
    """torchrun restarted the workers after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def local_device(device: str) -> str:
    """The device of this process: ``cuda:LOCAL_RANK`` for CUDA (``auto`` picks it when there is one)."""
    if device in ("cuda", "auto") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def threads_per_process() -> int:
    """This process's share of the machine's cores."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, (os.cpu_count() or 1) // max(local, 1))


@dataclass(frozen=True)
class ProcessGroupWorld(World):
    """A ``World`` over torch.distributed's default process group (gloo on CPUs, NCCL on GPUs)."""
    device: torch.device = field(default=torch.device("cpu"))

    def _tensor(self, values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64, device=self.device)

    def max(self, values: list[float]) -> list[float]:
        import torch.distributed as dist
        t = self._tensor(values)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def sum(self, values: list[float]) -> list[float]:
        import torch.distributed as dist
        t = self._tensor(values)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def gather(self, obj):
        import torch.distributed as dist
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        # rnnkit's buffers (a classifier's Naive Bayes counts) are equal in every process and constant while
        # training: nothing to broadcast before each step
        return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def init(device: str) -> World:
    """Join torchrun's process group (once) and return this process's ``World``; one process: ``World()``."""
    if not launched():
        return World()
    import torch.distributed as dist
    dev = torch.device(local_device(device))
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=TIMEOUT_S)
        store, rank, size = next(dist.rendezvous("env://", timeout=timeout))
        # torchrun keeps one store across restarts: without a prefix per attempt, a restarted process can read
        # a peer's address from the attempt before and fail to connect, or wait for it forever (torch 2.13).
        store = dist.PrefixStore(f"rnnkit/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", store=store, rank=rank, world_size=size,
                                timeout=timeout)
        atexit.register(_leave)
    return ProcessGroupWorld(rank=dist.get_rank(), size=dist.get_world_size(), barrier=dist.barrier, device=dev)


def _leave() -> None:
    """Leave the process group before the interpreter goes (a group torn down by exit alone can abort)."""
    import torch.distributed as dist
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:                   # noqa: BLE001 - exiting anyway; a peer may already be gone
        pass


def shard_rows(n: int, world: World) -> slice:
    """This process's rows of ``n`` (an error names the fix when ``n`` does not divide)."""
    if n % world.size:
        raise ValueError(f"--batch-size {n} does not divide among {world.size} processes; give a multiple of "
                         f"{world.size} (--batch-size is the global batch)")
    per = n // world.size
    return slice(world.rank * per, (world.rank + 1) * per)


class _Sharded:
    """A resumable batch iterator (which every process runs alike) seen through ``share``: this process's
    part of each batch. Its position is the inner iterator's."""

    def __init__(self, batches: Iterator, world: World):
        self.batches, self.world = batches, world
        self.steps_per_epoch = getattr(batches, "steps_per_epoch", None)

    def __iter__(self):
        return self

    def __next__(self):
        return self.share(next(self.batches))

    def share(self, batch):  # pragma: no cover - each kind says how
        raise NotImplementedError

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)


class ShardedBatches(_Sharded):
    """This process's streams of every language-model batch (B must divide among the processes)."""

    def __init__(self, batches: Iterator, world: World, batch_size: int):
        super().__init__(batches, world)
        self.rows = shard_rows(batch_size, world)

    def share(self, b: Batch) -> Batch:
        return Batch(b.x[self.rows], b.y[self.rows], b.reset)


@dataclass(frozen=True)
class Shard:
    """This process's rows of a classifier batch: ``batch`` (at least one row: a process left without rows
    gets a copy of one with ``live`` False, for the collectives), and the batch's global number of rows."""
    batch: object
    rows: int
    live: bool = True


class ShardedPaddedBatches(_Sharded):
    """This process's rows of every padded classifier batch (the last batch of an epoch may be smaller and
    need not divide: the processes' shares differ by at most one row, and the loss weighs them by count)."""

    def share(self, b) -> Shard:
        from ..data.padded import PaddedBatch
        n = len(b.labels)
        mine = torch.arange(n).tensor_split(self.world.size)[self.world.rank]
        live = len(mine) > 0
        if not live:
            mine = torch.tensor([0])
        return Shard(PaddedBatch(b.tokens[mine], b.lengths[mine], b.labels[mine]), n, live)


def gather_rows(state, world: World):
    """A carried state whose parts are (L, B/W, H) on each process, as one (L, B, H) state (CPU), in rank
    order: the single-process layout. None stays None."""
    if world.size == 1 or state is None:
        return state
    parts = state if isinstance(state, (list, tuple)) else [state]
    gathered = world.gather([p.detach().cpu() for p in parts])
    joined = [torch.cat([g[i] for g in gathered], 1) for i in range(len(parts))]
    return joined[0] if not isinstance(state, (list, tuple)) else type(state)(joined)


def own_rows(state, world: World, batch_size: int):
    """This process's rows of a state saved in the single-process layout (any world size that divides B)."""
    if world.size == 1 or state is None:
        return state
    rows = shard_rows(batch_size, world)
    if isinstance(state, (list, tuple)):
        return type(state)(p[:, rows] for p in state)
    return state[:, rows]


def first_rank(world: World, value):
    """Rank 0's ``value`` on every process (a choice made once: the recipe, which times steps)."""
    return world.gather(value)[0] if world.size > 1 else value
