"""What each subcommand does: turn the parsed flags into configs (``settings.py``), call the library, print."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import (BeamConfig, ClassifierConfig, ClassifierTrainConfig, DataConfig, ModelConfig, SampleConfig,
                      TextDataConfig, TrainConfig, from_dict)
from ..settings import build, read_toml
from .flags import sections


def _warn(msg: str) -> None:
    print(f"rnnkit: warning: {msg}", file=sys.stderr)


def _train_or_resume(args: argparse.Namespace, resume, train, data_cls: type, model_cls: type, train_cls: type,
                     auto: tuple[str, ...], resumable: tuple[str, ...] = ()):
    """A training command: ``--resume RUN`` with only budget flags, or a new run from the defaults, a
    ``--config`` file and the flags; the fields of ``auto`` that neither sets are left to the recipe.
    Returns the library's summary."""
    given = sections(args)
    toml = read_toml(args.config) if hasattr(args, "config") else {}
    if hasattr(args, "resume"):
        fixed = [k for s in ("data", "model") for k in given.get(s, {})]
        if fixed or toml:
            names = ", ".join("--" + k.replace("_", "-").replace("num-layers", "layers").replace("-path", "")
                              .replace("cell-options", "cell-option") for k in fixed) or "--config"
            raise ValueError(f"--resume continues a run with its own data and model settings; drop {names} "
                             f"(or start a new run with --out)")
        return _then_plot(args.resume, lambda: resume(args.resume, overrides=given.get("train"), data_path=args.path,
                                                      quiet=args.quiet))
    path = {"path": args.path} if args.path is not None else {}
    data = build(data_cls, toml.get("data"), given.get("data"), path, source="data settings")
    if data.path is None and getattr(data, "corpus", None) is None:
        raise ValueError("give a text file to train on, or --corpus NAME (moliere, shakespeare, alphabet)"
                         if data_cls is DataConfig else
                         "give labelled data to train on: an aclImdb directory or .tar.gz, a CSV/TSV or a JSONL file")
    model = build(model_cls, toml.get("model"), given.get("model"), source="model settings")
    cfg = build(train_cls, toml.get("train"), given.get("train"), source="train settings")
    name = getattr(data, "corpus", None) or (Path(data.path).stem if data_cls is DataConfig
                                             else Path(data.path.rstrip("/")).name.split(".")[0] or "classifier")
    out = getattr(args, "out", None) or toml.get("out") or f"runs/{name}"
    from ..training.distributed import restarted
    if restarted() and (Path(out) / "state.pt").exists():   # torchrun restarted the workers: go on from there
        fields = {k: v for k, v in given.get("train", {}).items() if k in resumable}
        return _then_plot(out, lambda: resume(out, overrides=fields, data_path=args.path, quiet=args.quiet))
    set_by_user = {k for s in ("data", "model", "train") for k in (*given.get(s, {}), *toml.get(s, {}))}
    return _then_plot(out, lambda: train(data, model, cfg, out, auto=tuple(f for f in auto if f not in set_by_user),
                                         overwrite=args.overwrite, quiet=args.quiet))


def _then_plot(run_dir: str, run):
    """Train, then draw the run's curves.png (when the plot extra is installed; rank 0 of a distributed
    run only), also after a run stopped by a signal or a bad loss. A picture never fails the training."""
    from ..training.lifecycle import TrainingStopped

    def plot() -> None:
        from ..training.distributed import writes
        if writes():
            from ..viz.plots import plot_after_training
            plot_after_training(run_dir, _warn)
    try:
        summary = run()
    except TrainingStopped:
        plot()
        raise
    plot()
    return summary


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.distributed import writes
    from ..training.lm import RESUMABLE_FIELDS, resume, train
    from ..training.recipes import LM_FIELDS

    summary = _train_or_resume(args, resume, train, DataConfig, ModelConfig, TrainConfig, LM_FIELDS,
                               RESUMABLE_FIELDS)
    if not writes():                            # a distributed run: rank 0 says how it went
        return 0
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"validation: {summary['val_nats_per_char']:.4f} nats/char, {summary['val_bits_per_char']:.4f} bits/char, "
          f"perplexity {summary['val_perplexity']:.3f} (best weights, step {summary['best_step']} of {summary['step']}; "
          f"{summary['train_time_s']:.0f}s, {summary['chars_per_s']:,.0f} chars/s)")
    if "test_nats_per_char" in summary:
        print(f"test:       {summary['test_nats_per_char']:.4f} nats/char, {summary['test_bits_per_char']:.4f} "
              f"bits/char, perplexity {summary['test_perplexity']:.3f}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..data.charlm import prepare_data
    from ..evaluate import evaluate_stream, score_file
    from ..runs import load

    lm = load(args.run, weights=args.weights, device=args.device)
    if args.file:
        score = score_file(lm.model, lm.vocab, args.file, member=args.member, encoding=args.encoding,
                           errors=args.errors, precision=lm.precision, warn=_warn)
        what = args.file
    else:
        data = prepare_data(from_dict(DataConfig, lm.run["data"], source=f"{args.run}/run.json data"), lm.vocab)
        score = evaluate_stream(lm.model, data.val, precision=lm.precision)
        what = "validation text"
    if args.json:
        print(json.dumps(score.to_dict()))
    else:
        print(f"{what}: {score.nats_per_char:.4f} nats/char, perplexity {score.perplexity:.3f}, "
              f"{score.bits_per_char:.4f} bits/char over {score.chars:,} characters ({lm.weights.name})")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ..inference.beam import beam_search
    from ..inference.sampling import generate
    from ..runs import load

    given = sections(args)
    sample, beam = given.get("sample", {}), given.get("beam", {})
    if "prompt" in sample and args.prompt_file is not None:
        raise ValueError("give --prompt or --prompt-file, not both")
    if args.prompt_file is not None:
        try:
            sample["prompt"] = Path(args.prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--prompt-file {args.prompt_file}: cannot read it ({e.__class__.__name__})") from None
    if beam and "beam" not in beam:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in beam)} go with --beam N (beam search)")
    sampling_only = sorted(set(sample) - {"prompt", "length"})
    if beam and sampling_only:
        raise ValueError(f"--beam searches instead of sampling; drop {', '.join('--' + k.replace('_', '-') for k in sampling_only)}")
    cfg = build(BeamConfig, sample, beam, source="beam settings") if beam else \
        build(SampleConfig, sample, source="sample settings")
    lm = load(args.run, weights=args.weights, device=args.device)
    out = sys.stdout
    head = "" if args.no_prompt or "prompt" not in sample else cfg.prompt
    if beam:
        found = beam_search(lm.model, lm.vocab, cfg, warn=_warn)
        for i, h in enumerate(found, 1):
            print(f"rnnkit: hypothesis {i}: log-probability {h.logprob:.4f} over {h.chars} characters, score "
                  f"{h.score:.4f}{' (stopped)' if h.stopped else ''}", file=sys.stderr)
        out.write(args.separator.join(head + h.text for h in found) + "\n")
    elif cfg.num_samples == 1:
        out.write(head)
        out.flush()
        generate(lm.model, lm.vocab, cfg, on_chars=lambda cs: (out.write(cs[0]), out.flush()))
        out.write("\n")
    else:
        texts = generate(lm.model, lm.vocab, cfg)
        out.write(args.separator.join(head + t for t in texts) + "\n")
    out.flush()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..inference.export import export_run

    task = export_run(args.run, args.out, weights=args.weights, overwrite=args.overwrite, kind=args.kind)
    what = f"{args.kind} model" if task == "charlm" else "classifier"
    print(f"wrote {args.out}: the {what} of {args.run} ({args.format})")
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    from ..data.corpus import BUNDLED
    for name, what in BUNDLED.items():
        print(f"{name:12} {what}")
    return 0


def cmd_classify_train(args: argparse.Namespace) -> int:
    from ..training.classifier import RESUMABLE_FIELDS, resume, train
    from ..training.distributed import writes
    from ..training.recipes import CLASSIFIER_FIELDS

    summary = _train_or_resume(args, resume, train, TextDataConfig, ClassifierConfig, ClassifierTrainConfig,
                               CLASSIFIER_FIELDS, RESUMABLE_FIELDS)
    if not writes():                            # a distributed run: rank 0 says how it went
        return 0
    if args.json:
        print(json.dumps(summary))
    elif summary.get("paused"):
        print(f"paused at step {summary['step']}")
    else:
        print(f"validation: accuracy {summary['val_accuracy']:.4f}, loss {summary['val_loss']:.4f} over "
              f"{summary['val_examples']:,} texts (best weights, step {summary['best_step']} of {summary['step']}, "
              f"{summary['epochs']:g} epochs{', stopped early' if summary['stopped_early'] else ''}; "
              f"{summary['train_time_s']:.0f}s, {summary['tokens_per_s']:,.0f} tokens/s)")
        if nb := summary.get("naive_bayes"):
            a, b = nb["weights"]
            print(f"blend: {a:.3g} x network + {b:.3g} x Naive Bayes (fitted on validation): accuracy "
                  f"{nb['val_accuracy_blend']:.4f}; the network alone {nb['val_accuracy_network']:.4f}, "
                  f"Naive Bayes alone {nb['val_accuracy_naive_bayes']:.4f}")
    return 0


def cmd_classify_eval(args: argparse.Namespace) -> int:
    from ..inference.predict import evaluate
    from ..runs import load_classifier
    from ..training.lifecycle import set_threads

    set_threads(args.threads)
    clf = load_classifier(args.run, weights=args.weights, device=args.device)
    result = evaluate(clf, args.path, split=args.split, format=args.format, text_column=args.text_column,
                      label_column=args.label_column, encoding=args.encoding, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['data']}: accuracy {result['accuracy']:.4f} ({result['correct']:,}/{result['examples']:,}), "
              f"loss {result['loss']:.4f} ({result['weights']})")
    return 0


def cmd_classify_predict(args: argparse.Namespace) -> int:
    from ..inference.predict import predict
    from ..runs import load_classifier

    texts = list(args.texts)
    if args.file is not None and texts:
        raise ValueError("give texts as arguments or --file, not both")
    if args.file is not None and args.file != "-":
        try:
            texts = Path(args.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--file {args.file}: cannot read it ({e.__class__.__name__})") from None
    elif not texts:
        if args.file is None and sys.stdin.isatty():
            raise ValueError("give a text to classify, --file FILE, or pipe texts on standard input (one per line)")
        texts = sys.stdin.read().splitlines()
    clf = load_classifier(args.run, weights=args.weights, device=args.device)
    for pred in predict(clf, texts, batch_size=args.batch_size):
        print(json.dumps(pred.to_dict()) if args.json else f"{pred.label}\t{pred.probability:.4f}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ..viz.plots import plot_runs

    if args.names and len(args.names) != len(args.runs):
        raise ValueError(f"give --name once per run: {len(args.runs)} runs, {len(args.names)} names")
    out = plot_runs(args.runs, args.out, names=args.names, warn=_warn)
    print(f"wrote {out}")
    return 0


def _viz_text(args: argparse.Namespace, sample: dict) -> tuple[str, str]:
    """The text a page shows and where it came from: --text, --text-file or --prompt (generated later)."""
    given = [name for name, value in (("--text", args.text), ("--text-file", args.text_file),
                                      ("--prompt", sample.get("prompt"))) if value is not None]
    if len(given) != 1:
        raise ValueError("give the text to look at: one of --text, --text-file or --prompt" if not given else
                         f"give one of --text, --text-file or --prompt, not {' and '.join(given)}")
    extra = sorted(set(sample) - {"prompt"})
    if extra and "prompt" not in sample:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in extra)} go with --prompt (generation)")
    if args.text_file is not None:
        if not Path(args.text_file).is_file():
            raise ValueError(f"--text-file {args.text_file}: no such file")
        try:
            return Path(args.text_file).read_text(encoding="utf-8"), Path(args.text_file).name
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--text-file {args.text_file}: cannot read it as UTF-8 text ({e.__class__.__name__})") from None
    if args.text is not None:
        return args.text, "the text given"
    return sample["prompt"], "generated text"


def cmd_viz(args: argparse.Namespace) -> int:
    from ..checkpoint import read_run, write_text_atomic

    sample = sections(args).get("sample", {})
    text, source = _viz_text(args, sample)
    task = read_run(args.run).get("task")
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {out}: the page is HTML; give a file ending in .html")
    out.parent.mkdir(parents=True, exist_ok=True)
    if task == "classifier":
        from ..runs import load_classifier
        from ..viz.page import classifier_page, describe_model
        from ..viz.reading import read

        if "prompt" in sample:
            raise ValueError(f"{args.run} is a classifier: give --text or --text-file (--prompt generates text "
                             f"with a language model)")
        clf = load_classifier(args.run, weights=args.weights, device=args.device)
        page = classifier_page(read(clf, text), describe_model(clf.run, args.run, clf.weights.name), source=source)
        write_text_atomic(out, page)
        print(f"wrote {out}: {args.run} reading {source}")
        return 0
    from ..inference.sampling import generate
    from ..runs import load
    from ..viz.page import describe_model, lm_page
    from ..viz.trace import check_text, trace_lm

    lm = load(args.run, weights=args.weights, device=args.device)
    if "prompt" in sample:
        cfg = build(SampleConfig, sample, source="sample settings")
        check_text(cfg.prompt + " " * cfg.length)
        text = cfg.prompt + generate(lm.model, lm.vocab, cfg, warn=_warn)[0]
    tr = trace_lm(lm.model, lm.vocab, text)
    if tr.unknown:
        from ..data.vocab import describe_unknown
        _warn(f"{source}: " + describe_unknown(lm.vocab.unknown(text)) + " (marked on the page)")
    model = describe_model(lm.run, args.run, lm.weights.name)
    write_text_atomic(out, lm_page(tr, lm.vocab.chars, model, args.units, source=source))
    print(f"wrote {out}: {tr.bits_per_char:.4f} bits/char over {tr.scored:,} characters of {source}")
    if tr.saturation:
        from ..viz.plots import PlotError, plot_saturation
        png = out.with_suffix(".gates.png")
        try:
            plot_saturation(tr.saturation, png, title=f"{args.run}: gate saturation on {source}")
            print(f"wrote {png}: gate saturation per layer")
        except PlotError:
            pass                        # no matplotlib: the page has the same scatter
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "export": cmd_export, "corpora": cmd_corpora,
            ("classify", "train"): cmd_classify_train, ("classify", "eval"): cmd_classify_eval,
            ("classify", "predict"): cmd_classify_predict, "plot": cmd_plot, "viz": cmd_viz}
