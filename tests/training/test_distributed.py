"""Data-parallel training under torchrun, 2 processes on gloo over loopback: the same model as one process
with the same global batch, identical weights on every rank, continuous streams on every rank, a SIGTERM
that saves a checkpoint the job resumes from exactly, resuming at another world size, a killed worker
restarted by torchrun, and a simulated two-node job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

from rnnkit.training.trainer import World

pytest.importorskip("torch.distributed.run", reason="torchrun ships with torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch has no gloo backend", allow_module_level=True)

ENV = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "RNNKIT_DIST_TIMEOUT": "60",
       "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
FLAGS = ["--cell", "gru", "--hidden-size", "24", "--layers", "2", "--embed-size", "8", "--dropout", "0",
         "--batch-size", "8", "--seq-len", "16", "--eval-every", "10", "--eval-chars", "2000", "--lr", "3e-3",
         "--seed", "5", "--device", "cpu", "--no-probe", "--quiet"]


@pytest.fixture
def corpus(tmp_path, shakespeare_text):
    path = tmp_path / "corpus.txt"
    path.write_text(shakespeare_text[:40_000], encoding="utf-8")
    return path


def torchrun(*args, nproc=2, extra=(), timeout=120, **kw):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *extra,
           "-m", "rnnkit", *map(str, args)]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout, **kw)


def one(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args), "--threads", "1"] if args[0] == "train"
                          and "--resume" not in args else [sys.executable, "-m", "rnnkit", *map(str, args)],
                          env=ENV, capture_output=True, text=True, timeout=timeout)


def weights(run):
    return load_file(str(run / "model.safetensors"))


def max_diff(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def val_losses(run):
    return [(r["step"], r["val_loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_two_processes_train_the_model_one_process_trains(corpus, tmp_path):
    two, single = tmp_path / "two", tmp_path / "one"
    r = torchrun("train", corpus, *FLAGS, "--steps", "30", "--out", two)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "8x16 over 2 processes" in r.stderr and r.stdout.count("validation:") == 1      # rank 0 speaks
    assert one("train", corpus, *FLAGS, "--steps", "30", "--out", single).returncode == 0
    assert max_diff(weights(two), weights(single)) < 1e-5
    (s2, v2), (s1, v1) = zip(*val_losses(two)), zip(*val_losses(single))
    assert s2 == s1 == (10, 20, 30) and v2 == pytest.approx(v1, abs=1e-6)      # evaluation split and summed
    assert json.loads((two / "run.json").read_text())["world_size"] == 2


SCRIPT = textwrap.dedent("""
    import sys, torch
    import rnnkit.training.distributed as D
    import rnnkit.training.trainer as T
    from rnnkit.config import DataConfig, ModelConfig, TrainConfig
    from rnnkit.training.lm import train
    corpus, out = sys.argv[1], sys.argv[2]
    seen = []
    nxt = D.ShardedBatches.__next__
    def record(self):
        b = nxt(self)
        seen.append((b.x.clone(), b.y.clone(), b.reset))
        return b
    D.ShardedBatches.__next__ = record
    fit = T.Trainer.fit
    def keep(self, **kw):
        result = fit(self, **kw)
        torch.save({"params": self.model.state_dict(), "batches": seen}, f"{out}.rank{self.world.rank}.pt")
        return result
    T.Trainer.fit = keep
    train(DataConfig(path=corpus), ModelConfig(cell="lstm", hidden_size=16, num_layers=1, embed_size=8),
          TrainConfig(batch_size=6, seq_len=12, steps=25, eval_every=25, eval_chars=1000, lr=3e-3, seed=2,
                      device="cpu", recipe_probe=False), out, quiet=True)
""")


def test_every_rank_holds_the_same_weights_and_reads_its_own_continuous_streams(corpus, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
           str(corpus), str(out)]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    ranks = [torch.load(f"{out}.rank{k}.pt", weights_only=True) for k in range(2)]
    for name, p in ranks[0]["params"].items():
        assert torch.equal(p, ranks[1]["params"][name])                       # bit for bit
    from rnnkit.data.streams import ConsecutiveBatches
    from rnnkit.data.charlm import prepare_data
    from rnnkit.config import DataConfig
    data = prepare_data(DataConfig(path=str(corpus)))
    reference = ConsecutiveBatches(data.train, 6, 12, seed=2)
    for step in range(25):
        full = next(reference)
        for k, rank in enumerate(ranks):
            x, y, reset = rank["batches"][step]
            assert torch.equal(x, full.x[3 * k:3 * k + 3].to(x.dtype)) and reset == full.reset   # its rows
            if step and not reset:                                            # each row continues itself
                assert torch.equal(x[:, 0], rank["batches"][step - 1][1][:, -1])


def test_sigterm_saves_a_checkpoint_that_resumes_exactly_and_at_another_world_size(corpus, tmp_path):
    run, ref = tmp_path / "run", tmp_path / "ref"
    flags = [*FLAGS, "--steps", "1200", "--eval-every", "300"]
    keep = lambda err: "\n".join(l for l in err.splitlines() if not l.startswith(("W1", "E1", "I1")))[-3000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "rnnkit",
           "train", str(corpus), *flags, "--out", str(run)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:    # past its first evaluation
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "SIGTERM: saved a resumable checkpoint" in err and err.count("SIGTERM: saved") == 1, keep(err)
    stopped = torch.load(run / "state.pt", weights_only=True)["progress"]["step"]
    assert 0 < stopped < 1200
    r = torchrun("train", "--resume", run, "--quiet")
    assert r.returncode == 0, keep(r.stderr)
    assert torchrun("train", corpus, *flags, "--out", ref).returncode == 0
    assert max_diff(weights(run), weights(ref)) == 0.0                         # exactly, at the same W
    assert val_losses(run) == val_losses(ref)
    assert one("train", "--resume", run, "--steps", "1300", "--quiet").returncode == 0   # W = 1 from W = 2
    assert val_losses(run)[-1][0] == 1300


class _LateSignalWorld(World):
    """Rank 0 of two, whose peer never sees a signal: after the step all-reduce number ``late``, SIGTERM lands
    here (too late for that all-reduce). Every collective is logged as (name, result)."""

    def __init__(self, late: int):
        super().__init__(rank=0, size=2)
        object.__setattr__(self, "late", late)
        object.__setattr__(self, "calls", [])

    def max(self, values):
        self.calls.append(("max", list(values)))
        if len(values) == 2 and sum(name == "max" and len(v) == 2 for name, v in self.calls) == self.late:
            signal.raise_signal(signal.SIGTERM)
        return values

    def sum(self, values):
        self.calls.append(("sum", list(values)))
        return values

    def gather(self, obj):
        self.calls.append(("gather", None))
        return [obj, obj]


def test_a_signal_after_the_steps_all_reduce_waits_for_the_next_one(tiny_corpus, tmp_path, monkeypatch):
    """A process acts on a signal only once every process has heard of it: else it starts the checkpoint's
    collectives while its peers start the next step's gradient all-reduce (gloo: 'collective mismatch')."""
    from rnnkit.config import DataConfig, ModelConfig, TrainConfig
    from rnnkit.training import distributed, lm
    from rnnkit.training.trainer import TrainingStopped
    world = _LateSignalWorld(late=5)
    monkeypatch.setattr(distributed, "init", lambda device: world)
    cfg = TrainConfig(batch_size=4, seq_len=16, steps=40, eval_every=1000, eval_chars=600, seed=7, threads=1,
                      device="cpu")
    with pytest.raises(TrainingStopped, match="SIGTERM: saved a resumable checkpoint at step 6 "):
        lm.train(DataConfig(path=str(tiny_corpus)), ModelConfig(cell="gru", hidden_size=16, num_layers=1,
                                                                embed_size=8), cfg, tmp_path / "run", quiet=True)
    steps = [v for name, v in world.calls if name == "max" and len(v) == 2]
    assert len(steps) == 6 and [flag for _, flag in steps] == [0.0] * 5 + [1.0]    # stopped on the shared flag


def test_a_batch_that_does_not_divide_gets_one_line(corpus, tmp_path):
    r = torchrun("train", corpus, *FLAGS, "--batch-size", "7", "--steps", "3", "--out", tmp_path / "x")
    assert r.returncode != 0 and "--batch-size 7 does not divide among 2 processes" in r.stderr
    assert not (tmp_path / "x").exists()


def test_a_classifier_trains_over_two_processes_as_in_one_with_an_uneven_batch(tmp_path):
    from conftest import FIXTURES
    flags = ["classify", "train", FIXTURES / "reviews.csv", "--cell", "gru", "--embed-size", "8", "--hidden-size", "8",
             "--bidirectional", "--pooling", "mean", "--dropout", "0", "--batch-size", "7", "--steps", "12",
             "--seed", "3", "--device", "cpu", "--quiet", "--min-freq", "1"]
    r = torchrun(*flags, "--out", tmp_path / "two")
    assert r.returncode == 0, "\n".join(l for l in r.stderr.splitlines() if not l.startswith(("W1", "E1", "I1")))[:4000]
    assert r.stdout.count("validation:") == 1 and "over 2 processes" in r.stderr
    assert one(*flags, "--out", tmp_path / "one", "--threads", "1").returncode == 0
    assert max_diff(weights(tmp_path / "two"), weights(tmp_path / "one")) < 1e-5      # 7 rows: 4 + 3
    (s2, v2), (s1, v1) = zip(*val_losses(tmp_path / "two")), zip(*val_losses(tmp_path / "one"))
    assert s2 == s1 and v2 == pytest.approx(v1, abs=1e-6)


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_run_goes_on_from_its_checkpoint(corpus, tmp_path):
    run, ref = tmp_path / "run", tmp_path / "ref"
    flags = [*FLAGS, "--steps", "1500", "--eval-every", "200"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=3",
           "-m", "rnnkit", "train", str(corpus), *flags, "--out", str(run)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run / "state.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = subprocess.run(["pgrep", "-f", f"rnnkit train {corpus}"], capture_output=True, text=True).stdout.split()
    victim = max(int(p) for p in workers if int(p) != proc.pid)
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0 and "resuming" in err, err[-3000:]
    assert torchrun("train", corpus, *flags, "--out", ref).returncode == 0
    assert max_diff(weights(run), weights(ref)) == 0.0


@pytest.mark.slow
def test_a_two_node_job_on_loopback_trains(corpus, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
              f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-backend=c10d", "--rdzv-id=rnnkit-test"]
    out = tmp_path / "two-nodes"
    job = ["-m", "rnnkit", "train", str(corpus), *FLAGS, "--steps", "20", "--out", str(out)]
    nodes = [subprocess.Popen(common + [f"--node-rank={k}"] + job, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    outs = [n.communicate(timeout=180) for n in nodes]
    assert all(n.returncode == 0 for n in nodes), [o[1][-1500:] for o in outs]
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    single = tmp_path / "single"
    assert one("train", corpus, *FLAGS, "--steps", "20", "--out", single).returncode == 0
    assert max_diff(weights(out), weights(single)) < 1e-5
