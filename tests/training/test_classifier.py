import csv
import io
import json
import math
import random
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit import checkpoint as ckpt
from rnnkit.classify import evaluate, load, predict, read_examples, resume, train
from rnnkit.data.padded import BucketBatches, pad_batch, truncate
from rnnkit.evaluate import class_outputs, score
from rnnkit.metrics import ClassifyScore
from rnnkit.cli import main
from rnnkit.config import ClassifierConfig, ClassifierTrainConfig, TextDataConfig
from rnnkit.data.corpus import CorpusError
from rnnkit.nn.models import SequenceClassifier

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine its waits cost seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- model

def _padded(lengths, vocab=30, pad_value=0, width=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    tokens = torch.full((len(lengths), width), pad_value, dtype=torch.int64)
    for b, n in enumerate(lengths):
        tokens[b, :n] = torch.randint(2, vocab, (n,), generator=g)
    return tokens, torch.tensor(lengths)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "meanmax"])
def test_padded_batch_equals_each_text_alone(cell, bidirectional, pooling):
    torch.manual_seed(0)
    cfg = ClassifierConfig(vocab_size=30, num_classes=3, cell=cell, embed_size=6, hidden_size=5, num_layers=2,
                           bidirectional=bidirectional, pooling=pooling, dropout=0.0)
    model = SequenceClassifier(cfg).eval()
    tokens, lengths = _padded([6, 1, 9, 3])
    batched = model(tokens, lengths)
    alone = torch.cat([model(tokens[b:b + 1, :n], lengths[b:b + 1]) for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=1e-5)
    # what sits in the padded positions changes nothing, however wide the padding
    garbage, _ = _padded([6, 1, 9, 3], pad_value=7, width=14, seed=1)
    garbage[:, :9] = torch.where(torch.arange(9)[None] < lengths[:, None], tokens, garbage[:, :9])
    torch.testing.assert_close(model(garbage, lengths), batched, atol=1e-6, rtol=1e-5)
    # the packed path runs the same weights to the same numbers
    packed = SequenceClassifier(ClassifierConfig(**{**cfg.__dict__, "packed": True})).eval()
    packed.load_state_dict(model.state_dict())
    torch.testing.assert_close(packed(tokens, lengths), batched, atol=1e-6, rtol=1e-5)


def test_meanmax_pooling_is_the_mean_beside_the_max():
    torch.manual_seed(0)
    both = SequenceClassifier(ClassifierConfig(vocab_size=30, num_classes=2, embed_size=6, hidden_size=5,
                                               bidirectional=True, pooling="meanmax", dropout=0.0)).eval()
    tokens, lengths = _padded([6, 1, 9, 3])
    feats = both.features(tokens, lengths)
    assert feats.shape == (4, 20) and both.head.in_features == 20
    for k, pooling in enumerate(["mean", "max"]):
        one = SequenceClassifier(ClassifierConfig(**{**both.config.__dict__, "pooling": pooling})).eval()
        one.load_state_dict({k: v for k, v in both.state_dict().items() if not k.startswith("head")}, strict=False)
        torch.testing.assert_close(feats[:, 10 * k:10 * (k + 1)], one.features(tokens, lengths))


def test_word_dropout_reads_words_as_unk_in_training_only():
    torch.manual_seed(0)
    cfg = ClassifierConfig(vocab_size=30, num_classes=2, embed_size=6, hidden_size=5, bidirectional=True,
                           pooling="mean", dropout=0.0, word_dropout=0.4)
    model = SequenceClassifier(cfg)
    plain = SequenceClassifier(ClassifierConfig(**{**cfg.__dict__, "word_dropout": 0.0}))
    plain.load_state_dict(model.state_dict())
    tokens, lengths = _padded([60, 1, 90, 30], seed=3)
    valid = torch.arange(tokens.shape[1])[None] < lengths[:, None]
    torch.manual_seed(5)
    dropped = model.train()(tokens, lengths)
    torch.manual_seed(5)
    unk = (torch.rand(tokens.shape) < 0.4) & valid                 # the draw the model makes
    assert 0.3 < unk.sum() / valid.sum() < 0.5
    torch.testing.assert_close(dropped, plain.train()(tokens.masked_fill(unk, 1), lengths))
    assert not torch.allclose(dropped, plain(tokens, lengths))
    torch.testing.assert_close(model.eval()(tokens, lengths), plain.eval()(tokens, lengths))   # evaluation: every word
    with pytest.raises(Exception, match="word_dropout"):
        ClassifierConfig(word_dropout=1.0)


def _naive_bayes_oracle(train_seqs, train_labels, texts, classes, alpha=1.0, once=True):
    """Multinomial Naive Bayes by hand: dictionaries of word and (word, word) counts per class, no hashing;
    log posteriors of ``texts``. ``once``: each distinct feature of a text counts once."""
    def features(seq):
        feats = seq + list(zip(seq, seq[1:]))
        return list(dict.fromkeys(feats)) if once else feats

    counts = [dict() for _ in range(classes)]
    for seq, y in zip(train_seqs, train_labels):
        for f in features(seq):
            counts[y][f] = counts[y].get(f, 0) + 1
    seen = set().union(*counts)
    totals = [sum(c.values()) + alpha * len(seen) for c in counts]
    prior = [math.log((train_labels.count(c) + alpha) / (len(train_labels) + alpha * classes)) for c in range(classes)]
    out = []
    for seq in texts:
        feats = [f for f in features(seq) if f in seen]
        out.append([prior[c] + sum(math.log((counts[c].get(f, 0) + alpha) / totals[c]) for f in feats)
                    for c in range(classes)])
    return torch.tensor(out, dtype=torch.float64).log_softmax(-1)


@pytest.mark.parametrize("once", [True, False])
def test_naive_bayes_part_matches_counting_by_hand_and_training_never_reads_it(once):
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(2, 12, (int(n),), generator=g) for n in torch.randint(1, 9, (40,), generator=g)]
    labels = torch.randint(0, 3, (40,), generator=g)
    cfg = ClassifierConfig(vocab_size=12, num_classes=3, embed_size=6, hidden_size=5, bidirectional=True,
                           pooling="mean", dropout=0.0, naive_bayes=1 << 12, naive_bayes_once=once)
    torch.manual_seed(0)
    model = SequenceClassifier(cfg)
    model.fit_naive_bayes(seqs, labels)
    pairs = {int(model.naive_bayes_features(s[None])[0, t]) for s in seqs for t in range(len(s) - 1)}
    assert len(pairs) == len({(int(a), int(b)) for s in seqs for a, b in zip(s, s[1:])})   # no bucket shared
    texts = [[3, 4, 5, 4, 5], [11], [2, 9, 9, 7, 3, 3, 10]]       # known and unseen pairs, repeats, one word
    tokens, lengths = torch.zeros(3, 9, dtype=torch.int64), torch.tensor([len(t) for t in texts])
    for b, t in enumerate(texts):
        tokens[b, :len(t)] = torch.tensor(t)
    expected = _naive_bayes_oracle([s.tolist() for s in seqs], labels.tolist(), texts, 3, once=once)
    got = model.naive_bayes(tokens, lengths).double().log_softmax(-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # unfitted blend (1, 0): the network alone; training reads only the network (no log-softmax either)
    model.eval()
    torch.testing.assert_close(model(tokens, lengths), model.network(tokens, lengths).log_softmax(-1))
    model.blend.copy_(torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(model(tokens, lengths), 0.5 * model.network(tokens, lengths).log_softmax(-1)
                               + 2.0 * got.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.train()(tokens, lengths), model.network(tokens, lengths))
    # the buffers travel with the weights: a fresh model loading them answers the same
    other = SequenceClassifier(cfg).eval()
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(tokens, lengths), model.eval()(tokens, lengths))


def test_blend_weights_are_the_least_cross_entropy_on_held_out_texts():
    from rnnkit.training.classifier import BLEND_RIDGE, fit_blend
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(2, 20, (int(n),), generator=g) for n in torch.randint(2, 12, (120,), generator=g)]
    labels = torch.tensor([int(s[0]) % 2 for s in seqs])           # the first word decides the label
    cfg = ClassifierConfig(vocab_size=20, num_classes=2, embed_size=6, hidden_size=5, pooling="mean",
                           dropout=0.0, naive_bayes=1 << 12)
    torch.manual_seed(0)
    model = SequenceClassifier(cfg)
    model.fit_naive_bayes(seqs[:80], labels[:80])
    info, _ = fit_blend(model, seqs[80:], labels[80:])
    a, b = info["weights"]
    assert a >= 0 and b >= 0 and list(model.blend.tolist()) == pytest.approx([a, b], abs=1e-6)
    net, nb = (x.log_softmax(-1) for x in class_outputs(model, seqs[80:], model.network, model.naive_bayes))

    def nll(a, b):                                                 # the objective fit_blend minimises
        return float(F.cross_entropy(a * net + b * nb, labels[80:])) + BLEND_RIDGE * (a * a + b * b)
    best = nll(a, b)
    for da, db in [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)]:   # a minimum among its neighbours
        if a + da >= 0 and b + db >= 0:
            assert nll(a + da, b + db) >= best - 1e-9
    assert best <= min(nll(1, 0), nll(0, 1)) + 1e-9                  # no worse than either part alone
    assert info["val_accuracy_blend"] == pytest.approx(float(((a * net + b * nb).argmax(-1) == labels[80:])
                                                              .double().mean()), abs=1e-6)
    # two held-out texts, both right by either part: the weights stay finite (the ridge), not run off
    info, _ = fit_blend(model, seqs[:2], labels[:2])
    assert all(0 <= w < 100 for w in info["weights"]) and info["val_accuracy_blend"] == 1.0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_last_state_features_match_torch_bidirectional_packed(cell):
    """Against torch.nn's own bidirectional, two-layer, packed RNN with the same weights: its h_n of the
    last layer (forward, backward) is the 'last' feature vector."""
    torch.manual_seed(0)
    cfg = ClassifierConfig(vocab_size=30, num_classes=2, cell=cell, embed_size=6, hidden_size=5, num_layers=2,
                           bidirectional=True, pooling="last", dropout=0.0)
    model = SequenceClassifier(cfg).eval()
    ref = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](6, 5, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for k in range(2):
            for d, suffix in enumerate(["", "_reverse"]):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(ref, f"{name}_l{k}{suffix}").copy_(getattr(model.layers[k][d], f"{name}_l0"))
    tokens, lengths = _padded([4, 7, 2])
    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(model.embed(tokens), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, h = ref(packed)
        h = h[0] if cell == "lstm" else h                        # (layers * 2, B, H)
        expected = torch.cat([h[-2], h[-1]], dim=-1)
        torch.testing.assert_close(model.features(tokens, lengths), expected, atol=1e-6, rtol=1e-5)


def test_padding_embedding_gets_no_gradient_and_lengths_are_checked():
    model = SequenceClassifier(ClassifierConfig(vocab_size=30, num_classes=2, embed_size=4, hidden_size=3,
                                                bidirectional=True))
    tokens, lengths = _padded([5, 2])
    model(tokens, lengths).sum().backward()
    assert model.embed.weight.grad[0].abs().sum() == 0
    assert torch.all(model.embed.weight[0] == 0)
    with pytest.raises(ValueError, match="lengths"):
        model(tokens, torch.tensor([5, 0]))


# ----------------------------------------------------------------------------- batches

def test_truncate_keeps_head_tail_or_both():
    ids = list(range(10))
    assert truncate(ids, 4, "head") == [0, 1, 2, 3]
    assert truncate(ids, 4, "tail") == [6, 7, 8, 9]
    assert truncate(ids, 5, "both") == [0, 1, 2, 8, 9]
    assert truncate(ids, None, "both") == ids and truncate(ids, 10, "head") == ids


def test_pad_batch_lengths_and_zeros():
    b = pad_batch([torch.tensor([5, 6, 7], dtype=torch.int32), torch.tensor([8], dtype=torch.int32)],
                  torch.tensor([1, 0]))
    assert b.tokens.tolist() == [[5, 6, 7], [8, 0, 0]] and b.tokens.dtype == torch.int64
    assert b.lengths.tolist() == [3, 1]
    wide = pad_batch([torch.tensor([5, 6, 7])], torch.tensor([0]), multiple=4)
    assert wide.tokens.tolist() == [[5, 6, 7, 0]] and wide.lengths.tolist() == [3]


@pytest.mark.parametrize("bucket", [0, 3, 10])
def test_batches_cover_each_example_once_per_epoch_and_resume(bucket):
    rng = random.Random(0)
    seqs = [torch.arange(1, rng.randint(1, 40) + 1, dtype=torch.int32) for _ in range(50)]
    labels = torch.arange(50)                                      # label = example index, to identify it
    batches = BucketBatches(seqs, labels, 8, bucket=bucket, seed=3)
    assert batches.steps_per_epoch == 7
    epoch = [next(batches) for _ in range(7)]
    assert sorted(torch.cat([b.labels for b in epoch]).tolist()) == list(range(50))
    for b in epoch:
        assert b.lengths.tolist() == [len(seqs[i]) for i in b.labels.tolist()]
    if bucket:   # sorted within pools: padding far below that of random batches
        padding = sum(int(b.lengths.max() * len(b.lengths) - b.lengths.sum()) for b in epoch)
        plain = BucketBatches(seqs, labels, 8, bucket=0, seed=3)
        plain_padding = sum(int(b.lengths.max() * len(b.lengths) - b.lengths.sum()) for b in
                            (next(plain) for _ in range(7)))
        assert padding < plain_padding / 2
    next(batches), next(batches)
    state = batches.state_dict()
    ahead = [next(batches).labels.tolist() for _ in range(10)]
    again = BucketBatches(seqs, labels, 8, bucket=bucket, seed=3)
    again.load_state_dict(state)
    assert [next(again).labels.tolist() for _ in range(10)] == ahead


def test_score_sums_then_divides():
    torch.manual_seed(0)
    model = SequenceClassifier(ClassifierConfig(vocab_size=30, num_classes=3, embed_size=4, hidden_size=3)).eval()
    seqs = [torch.randint(2, 30, (n,), dtype=torch.int32) for n in (3, 8, 1, 5, 2)]
    labels = torch.tensor([0, 2, 1, 1, 0])
    s = score(model, seqs, labels, batch_size=2)
    logits = torch.cat([model(x[None].long(), torch.tensor([len(x)])) for x in seqs]).detach()
    assert s.examples == 5 and s.correct == int((logits.argmax(1) == labels).sum())
    assert s.loss == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-5)
    assert ClassifyScore(0.0, 0, 0).to_dict()["examples"] == 0


# ----------------------------------------------------------------------------- reading data

REVIEWS = {("train", "pos"): ["A <br />wonderful film :)", "Loved it"], ("train", "neg"): ["Awful.", "Dull :("],
           ("test", "pos"): ["Superb"], ("test", "neg"): ["Boring", "Bad"], ("train", "unsup"): ["no label"]}


def _write_aclimdb(root: Path) -> Path:
    for (split, label), texts in REVIEWS.items():
        d = root / "aclImdb" / split / label
        d.mkdir(parents=True)
        for i, text in enumerate(texts):
            (d / f"{10 - i}_{7 + i}.txt").write_text(text, encoding="utf-8")
    (root / "aclImdb" / "README").write_text("fabricated")
    (root / "aclImdb" / "train" / "labeledBow.feat").write_text("0 0:1")
    return root / "aclImdb"


def test_aclimdb_from_directory_and_tar_gz_agree(tmp_path):
    directory = _write_aclimdb(tmp_path / "unpacked")
    archive = tmp_path / "tiny_aclImdb.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(directory, arcname="aclImdb")
    for split in ("train", "test"):
        expected = sorted((label, text) for (s, label), texts in REVIEWS.items() if s == split and label != "unsup"
                          for text in texts)
        seen = []
        for path in (directory, directory.parent, archive):          # aclImdb/, its parent, the archive
            ex = read_examples(path, split=split)
            assert sorted(zip(ex.labels, ex.texts)) == expected
            seen.append((ex.labels, ex.texts))
        assert seen[0] == seen[1] == seen[2]                            # same order from all three
    with pytest.raises(CorpusError, match="no reviews for split 'valid'"):
        read_examples(archive, split="valid")


def test_csv_tsv_jsonl_and_their_errors(tmp_path):
    (tmp_path / "d.csv").write_text('review,sentiment\n"Good, really",pos\nBad,neg\n', encoding="utf-8")
    ex = read_examples(tmp_path / "d.csv", text_column="review", label_column="sentiment")
    assert ex.texts == ["Good, really", "Bad"] and ex.labels == ["pos", "neg"]
    (tmp_path / "d.tsv").write_text("text\tlabel\nfine\t3\n", encoding="utf-8")
    assert read_examples(tmp_path / "d.tsv").labels == ["3"]
    (tmp_path / "d.jsonl").write_text('{"text": "ok", "label": 1}\n\n{"text": "meh", "label": "x"}\n')
    assert read_examples(tmp_path / "d.jsonl").labels == ["1", "x"]
    # the default names absent: well-known ones stand in, and the source says which were read
    auto = read_examples(tmp_path / "d.csv")
    assert (auto.texts, auto.labels) == (ex.texts, ex.labels)
    assert auto.source == "d.csv (text column 'review', label column 'sentiment')" and ex.source == "d.csv"
    (tmp_path / "s.tsv").write_text("Sentence\tLabel\nfine\t1\n", encoding="utf-8")
    assert read_examples(tmp_path / "s.tsv").texts == ["fine"]
    (tmp_path / "w.csv").write_text("words,mood\nfine,up\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"no column 'text' \(its columns: 'words', 'mood'\).*--text-column"):
        read_examples(tmp_path / "w.csv", label_column="mood")
    with pytest.raises(CorpusError, match=r"no column 'sentiment'"):      # a name given is never replaced
        read_examples(tmp_path / "w.csv", text_column="words", label_column="sentiment")
    (tmp_path / "n.csv").write_text("pos,a long first sentence of a review that is really the first row\n")
    with pytest.raises(CorpusError, match="first line looks like data"):
        read_examples(tmp_path / "n.csv")
    with pytest.raises(CorpusError, match="line 1: no key 'review'"):
        read_examples(tmp_path / "d.jsonl", text_column="review")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(CorpusError, match="--format"):
        read_examples(tmp_path / "d.txt")


# ----------------------------------------------------------------------------- training and use

POSITIVE, NEGATIVE = ["great", "superb", "loved"], ["awful", "boring", "hated"]
FILLER = "the movie was a and it film plot acting story".split()


def _labelled_csv(path: Path, n: int, seed: int = 0, labels=("good", "bad")) -> Path:
    """Texts of filler words with one telling word somewhere; the label says which kind."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "review", "sentiment"])
        for i in range(n):
            label = labels[i % len(labels)]
            words = rng.choices(FILLER, k=rng.randint(2, 12))
            words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == labels[0] else NEGATIVE))
            w.writerow([i, " ".join(words), label])
    return path


TINY_MODEL = ClassifierConfig(cell="gru", embed_size=16, hidden_size=16, bidirectional=True, dropout=0.0)
TINY_TRAIN = ClassifierTrainConfig(**{"batch_size": 16, "lr": 0.02, "epochs": 8, "warmup_steps": 0, "seed": 1})


def test_tiny_labelled_set_is_learned_to_100_percent(tmp_path):
    data = TextDataConfig(path=str(_labelled_csv(tmp_path / "d.csv", 100)), text_column="review",
                          label_column="sentiment", min_freq=1)
    summary = train(data, TINY_MODEL, TINY_TRAIN, tmp_path / "run", quiet=True, log=lambda m: None)
    assert summary["val_accuracy"] == 1.0
    clf = load(tmp_path / "run")
    assert evaluate(clf, data.path)["accuracy"] == 1.0               # every training text too
    own = evaluate(clf)                                              # no data: the run's validation split
    assert own["examples"] == 20 and own["loss"] == pytest.approx(summary["val_loss"], rel=1e-6)
    run = ckpt.read_run(tmp_path / "run")
    assert run["task"] == "classifier" and run["labels"] == ["bad", "good"]
    records = ckpt.read_metrics(tmp_path / "run")
    assert len(records) == 8 and all("val_accuracy" in r for r in records)   # one validation per epoch
    preds = predict(clf, ["the film was superb", "awful plot", "hated it :("])
    assert [p.label for p in preds] == ["good", "bad", "bad"]
    assert all(0.5 < p.probability <= 1 and sum(p.probabilities.values()) == pytest.approx(1) for p in preds)


def test_a_naive_bayes_blend_is_fitted_saved_and_used_by_every_reader(tmp_path):
    data = TextDataConfig(path=str(_labelled_csv(tmp_path / "d.csv", 60)), text_column="review",
                          label_column="sentiment", min_freq=1)
    model = ClassifierConfig(**{**TINY_MODEL.__dict__, "naive_bayes": 1 << 12})
    cfg = ClassifierTrainConfig(**{**TINY_TRAIN.__dict__, "epochs": 2})
    summary = train(data, model, cfg, tmp_path / "run", quiet=True, log=lambda m: None)
    nb = summary["naive_bayes"]
    assert set(nb) == {"weights", "val_accuracy_network", "val_accuracy_naive_bayes", "val_accuracy_blend"}
    assert nb["val_accuracy_blend"] == pytest.approx(summary["val_accuracy"])
    for which in ("best", "last"):                       # each saved model carries its own fitted blend
        path = ckpt.weights_path(tmp_path / "run", which)
        assert ckpt.read_weights_metadata(path)["blend"]["weights"] == pytest.approx(
            ckpt.load_weights(path)["blend"].tolist(), abs=1e-6)
    clf = load(tmp_path / "run")
    assert clf.model.blend.tolist() == pytest.approx(nb["weights"], abs=1e-6)
    assert evaluate(clf)["accuracy"] == pytest.approx(summary["val_accuracy"])     # the blend, not the network
    p = predict(clf, ["the film was superb"])[0]
    assert sum(p.probabilities.values()) == pytest.approx(1)


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    data = TextDataConfig(path=str(_labelled_csv(tmp_path / "d.csv", 64)), text_column="review",
                          label_column="sentiment", min_freq=1)
    cfg = ClassifierTrainConfig(**{"batch_size": 16, "lr": 0.01, "epochs": 3, "warmup_steps": 2, "seed": 2})
    model = ClassifierConfig(cell="lstm", embed_size=8, hidden_size=8, pooling="last")
    quiet = {"quiet": True, "log": lambda m: None}
    whole = train(data, model, cfg, tmp_path / "whole", **quiet)
    paused = train(data, model, cfg, tmp_path / "parts", pause_at=5, **quiet)   # mid-epoch (4 steps per epoch)
    assert paused["paused"] and paused["step"] == 5
    again = resume(tmp_path / "parts", **quiet)
    assert again["val_loss"] == pytest.approx(whole["val_loss"], abs=1e-6)
    timeless = [[{k: v for k, v in r.items() if k not in ("elapsed_s", "tokens_per_s")} for r in ckpt.read_metrics(d)]
                for d in (tmp_path / "parts", tmp_path / "whole")]
    assert timeless[0] == timeless[1] and len(timeless[0]) == 3
    with pytest.raises(ValueError, match="already finished"):
        resume(tmp_path / "parts", **quiet)


def test_early_stopping_ends_a_run_that_stops_improving(tmp_path):
    # labels independent of the texts: validation loss cannot keep improving while the model memorises
    path = tmp_path / "noise.csv"
    rng = random.Random(0)
    path.write_text("text,label\n" + "".join(f"{' '.join(rng.choices(FILLER, k=6))} w{i},{rng.choice('ab')}\n"
                                             for i in range(80)))
    cfg = ClassifierTrainConfig(**{"batch_size": 8, "lr": 0.03, "epochs": 30, "warmup_steps": 0, "seed": 0})
    summary = train(TextDataConfig(path=str(path), min_freq=1), TINY_MODEL, cfg, tmp_path / "run",
                    patience=2, quiet=True, log=lambda m: None)
    assert summary["stopped_early"] and summary["epochs"] < 30
    assert summary["step"] - summary["best_step"] == 2 * 8            # 8 steps per epoch
    # the best weights are the first epoch of the highest validation accuracy, whatever the loss did
    records = ckpt.read_metrics(tmp_path / "run")
    best = max(records, key=lambda r: (r["val_accuracy"], -r["step"]))
    assert summary["best_step"] == best["step"] and summary["val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert all(r["val_error"] == pytest.approx(1 - r["val_accuracy"]) for r in records)


# ----------------------------------------------------------------------------- command line

def test_cli_end_to_end_on_a_tiny_csv(tmp_path, capsys, monkeypatch):
    data = _labelled_csv(tmp_path / "data.csv", 100)
    test = _labelled_csv(tmp_path / "test.csv", 40, seed=5)
    run = tmp_path / "runs" / "csv"
    flags = ["--text-column", "review", "--label-column", "sentiment"]
    assert main(["classify", "train", str(data), *flags, "--out", str(run), "--cell", "gru", "--bidirectional",
                 "--embed-size", "16", "--hidden-size", "16", "--dropout", "0", "--min-freq", "1", "--pooling", "max",
                 "--batch-size", "16", "--lr", "0.02", "--epochs", "8", "--warmup-steps", "0", "--seed", "1",
                 "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["val_accuracy"] == 1.0

    assert main(["classify", "eval", str(run), str(test), *flags, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"accuracy", "loss", "examples"} <= set(result) and result["examples"] == 40
    assert result["accuracy"] >= 0.95

    assert main(["classify", "predict", str(run), "A superb, moving film."]) == 0
    label, prob = capsys.readouterr().out.strip().split("\t")
    assert label == "good" and 0.5 < float(prob) <= 1

    monkeypatch.setattr("sys.stdin", io.StringIO("the plot was boring\nloved the acting\n"))
    assert main(["classify", "predict", str(run), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["label"] for p in lines] == ["bad", "good"]

    (tmp_path / "reviews.txt").write_text("hated it\ngreat\n")
    assert main(["classify", "predict", str(run), "--file", str(tmp_path / "reviews.txt")]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["bad", "good"]


def test_cli_one_line_errors(tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text(_labelled_csv(tmp_path / "named.csv", 20).read_text().replace("review,sentiment", "words,mood", 1))
    assert main(["classify", "train", str(data), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1 and "--text-column" in err
    one = tmp_path / "one.csv"
    one.write_text("text,label\n" + "".join(f"text {i},pos\n" for i in range(10)))
    assert main(["classify", "train", str(one), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "at least two labels" in err and err.count("\n") == 1
    assert main(["classify", "eval", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_reads_the_real_aclimdb_archive():
    path = SHARED / "aclImdb_v1.tar.gz"
    if not path.exists():
        pytest.skip(f"{path} not found (the IMDb archive lives in ../shared/data beside the repository)")
    ex = read_examples(path, split="test")
    assert len(ex) == 25000 and sorted(set(ex.labels)) == ["neg", "pos"]


def test_default_budget_is_three_epochs_or_200_steps(tmp_path):
    data = TextDataConfig(path=str(_labelled_csv(tmp_path / "d.csv", 50)), text_column="review",
                          label_column="sentiment", min_freq=1)
    cfg = ClassifierTrainConfig(**{"batch_size": 8})         # 40 texts: 5 steps per epoch
    summary = train(data, TINY_MODEL, cfg, tmp_path / "run", pause_at=1, quiet=True, log=lambda m: None)
    assert summary["paused"] and ckpt.read_run(tmp_path / "run")["train"]["steps"] == 200
    assert ckpt.read_run(tmp_path / "run")["train"]["warmup_steps"] == 20      # a tenth of the budget
