"""``rnnkit plot`` and ``rnnkit viz`` end to end, curves.png after training, TensorBoard events, and the one-line
errors of bad input."""

from __future__ import annotations

import json
import re
import struct

import pytest

from rnnkit import checkpoint as ckpt
from rnnkit.cli import main
from rnnkit.config import DataConfig, ModelConfig, TrainConfig
from rnnkit.training.lm import resume, train

pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")

TINY = ["--hidden-size", "16", "--embed-size", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "12",
        "--steps", "6", "--eval-every", "3", "--eval-chars", "400", "--threads", "1", "--quiet"]
PNG = b"\x89PNG\r\n\x1a\n"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG
    return struct.unpack(">II", data[16:24])


def _cfg(**kw):
    return TrainConfig(**{**dict(batch_size=4, seq_len=12, steps=9, eval_every=3, eval_chars=400, seed=1, threads=1,
                                 lr=3e-3, warmup_steps=2, device="cpu"), **kw})


SMALL = ModelConfig(cell="gru", hidden_size=16, num_layers=1, embed_size=8)


def test_train_leaves_curves_png_and_plot_overlays_runs(tiny_corpus, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(capsys, "train", tiny_corpus, "--out", a, *TINY)[0] == 0
    assert png_size(a / "curves.png")[0] > 400
    assert run(capsys, "train", tiny_corpus, "--out", b, "--cell", "lstm", *TINY)[0] == 0
    code, out, err = run(capsys, "plot", a, b, "--out", tmp_path / "both.svg", "--name", "gru", "--name", "lstm")
    assert code == 0 and "wrote" in out
    svg = (tmp_path / "both.svg").read_text()
    assert "gru validation" in svg and "lstm validation" in svg


def test_plot_one_record_a_resumed_run_and_a_run_still_training(tiny_corpus, tmp_path, capsys):
    one = tmp_path / "one"
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=3), one, quiet=True)
    assert len(ckpt.read_metrics(one)) == 1
    assert run(capsys, "plot", one, "--out", tmp_path / "one.png")[0] == 0
    resumed = tmp_path / "resumed"
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(), resumed, quiet=True, pause_at=4)
    resume(resumed, quiet=True)
    assert [r["step"] for r in ckpt.read_metrics(resumed)] == [3, 6, 9]
    assert run(capsys, "plot", resumed, "--out", tmp_path / "resumed.png")[0] == 0
    with open(resumed / ckpt.METRICS, "a") as f:           # a run still training: a half-written last line
        f.write('{"step": 12, "elapsed_s": 0.')
    assert run(capsys, "plot", resumed, one, "--out", tmp_path / "live.png")[0] == 0
    assert png_size(tmp_path / "live.png")[0] > 400


def test_a_plot_failure_warns_and_training_succeeds(tiny_corpus, tmp_path, capsys, monkeypatch):
    import rnnkit.viz.plots as plots

    def broken(*a, **kw):
        raise RuntimeError("the disk is full of fonts")
    monkeypatch.setattr(plots, "plot_runs", broken)
    code, out, err = run(capsys, "train", tiny_corpus, "--out", tmp_path / "r", *TINY)
    assert code == 0 and "warning: could not draw" in err and "fonts" in err
    assert not (tmp_path / "r" / "curves.png").exists() and (tmp_path / "r" / "best.safetensors").exists()


def test_plot_bad_input_gets_one_line(tiny_corpus, tmp_path, capsys):
    empty = tmp_path / "empty"
    train(DataConfig(path=str(tiny_corpus)), SMALL, _cfg(steps=2), empty, quiet=True, pause_at=1)
    (empty / ckpt.METRICS).unlink(missing_ok=True)
    capsys.readouterr()
    cases = [((tmp_path / "nope",), "no such run directory"), ((tiny_corpus,), "not a run directory"),
             ((tmp_path,), "not an rnnkit run"), ((empty,), "no evaluation")]
    for args, message in cases:
        code, out, err = run(capsys, "plot", *args, "--out", tmp_path / "x.png")
        assert code == 2 and message in err and err.count("\n") == 1, err
    code, _, err = run(capsys, "plot", empty, "--out", tmp_path / "x.jpg")
    assert code == 2 and ".png, .svg, .pdf" in err
    assert not (tmp_path / "x.png").exists()


def test_tensorboard_events_hold_every_evaluation(tiny_corpus, tmp_path, capsys):
    pytest.importorskip("tensorboardX", reason="--tensorboard needs the tensorboard extra")
    from tensorboardX.proto import event_pb2

    logdir = tmp_path / "tb"
    assert run(capsys, "train", tiny_corpus, "--out", tmp_path / "r", "--tensorboard", logdir, *TINY)[0] == 0
    scalars = {}
    for path in logdir.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        i = 0
        while i < len(data):                     # TFRecord: length (8), its crc (4), the record, its crc (4)
            n = struct.unpack("<Q", data[i:i + 8])[0]
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            for v in event.summary.value:
                scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
            i += 12 + n + 4
    records = ckpt.read_metrics(tmp_path / "r")
    assert [s for s, _ in scalars["loss/val"]] == [r["step"] for r in records] == [3, 6]
    assert [v for _, v in scalars["loss/val"]] == pytest.approx([r["val_loss"] for r in records], rel=1e-6)
    assert "loss/train" in scalars and "val/bpc" in scalars


def test_viz_pages_from_the_command_line(lm_run, classifier_run, tmp_path, capsys):
    scene = tmp_path / "scene.txt"
    scene.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n", encoding="utf-8")
    code, out, err = run(capsys, "viz", lm_run, "--text-file", scene, "--out", tmp_path / "scene.html", "--units", "4")
    assert code == 0 and re.search(r"bits/char over 5\d characters of scene.txt", out)
    assert (tmp_path / "scene.gates.png").exists()
    code, out, err = run(capsys, "viz", lm_run, "--prompt", "ROMEO:", "--length", "60", "--seed", "4",
                         "--out", tmp_path / "gen.html", "--units", "0:3,1:7")
    assert code == 0
    page = (tmp_path / "gen.html").read_text()
    data = json.loads(re.search(r'type="application/json">(.*?)</script>', page, re.S).group(1))
    code, sample, _ = run(capsys, "sample", lm_run, "--prompt", "ROMEO:", "--length", "60", "--seed", "4")
    assert data["text"] == sample[:-1] and [u["name"] for u in data["units"]] == ["0:3", "1:7"]
    code, out, err = run(capsys, "viz", classifier_run, "--text", "A joy to watch. Tedious.", "--out",
                         tmp_path / "review.html")
    assert code == 0 and "reading" in out and (tmp_path / "review.html").stat().st_size > 1000


def test_viz_bad_input_gets_one_line(lm_run, classifier_run, tmp_path, capsys):
    huge = tmp_path / "huge.txt"
    huge.write_text("a" * 20_001)
    out = ["--out", tmp_path / "p.html"]
    cases = [
        ((tmp_path / "nope", "--text", "hi", *out), "no such run directory"),
        ((tmp_path, "--text", "hi", *out), "not an rnnkit run"),
        ((lm_run, "--text", "", *out), "empty"),
        ((lm_run, "--text-file", huge, *out), "cut it"),
        ((lm_run, "--text-file", tmp_path / "missing.txt", *out), "no such file"),
        ((lm_run, *out), "one of --text, --text-file or --prompt"),
        ((lm_run, "--text", "a", "--prompt", "b", *out), "not --text and --prompt"),
        ((lm_run, "--text", "a", "--length", "9", *out), "go with --prompt"),
        ((lm_run, "--text", "hello", "--out", tmp_path / "p.png"), "ending in .html"),
        ((lm_run, "--text", "hello", "--units", "0:999", *out), "not in the model"),
        ((classifier_run, "--prompt", "x", *out), "is a classifier"),
    ]
    for args, message in cases:
        code, _, err = run(capsys, "viz", *args)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "p.html").exists()
    with pytest.raises(SystemExit):             # argparse: --units must be a count or LAYER:UNIT pairs
        main(["viz", str(lm_run), "--text", "a", "--units", "many", "--out", str(tmp_path / "p.html")])
    assert "LAYER:UNIT" in capsys.readouterr().err
