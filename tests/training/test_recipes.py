"""Recipes: what rnnkit chooses when the user leaves it unset, and that the user's own values always win."""

import csv
import json
import random

import torch

from rnnkit.cli import main
from rnnkit.config import ClassifierConfig, ClassifierTrainConfig, ModelConfig, TextDataConfig, TrainConfig
from rnnkit.training import recipes
from rnnkit.training.recipes import LM_FIELDS, choose_classifier, choose_lm

CPU = torch.device("cpu")
MODEL = ModelConfig(vocab_size=65)


def _lm(budget_s=None, chars=1_000_000, auto=LM_FIELDS, model=MODEL, **train):
    cfg = TrainConfig(time_budget=budget_s, recipe_probe=False, **train)
    return choose_lm(model, cfg, auto, train_chars=chars, device=CPU)


def test_cost_model_choice_for_ten_minutes_on_a_million_chars():
    model, train, recipe = _lm(600)
    # the cost model's GRU rates: 512 wide takes >= 1,500 steps in 10 minutes, 768 wide does not
    steps_512 = recipes.modelled_rate("gru", 2, 512, 64, 65) * 600 / (64 * 50)
    steps_768 = recipes.modelled_rate("gru", 2, 768, 64, 65) * 600 / (64 * 50)
    assert steps_512 >= recipes.MIN_STEPS > steps_768
    assert model.hidden_size == 512 and train.lr == 3e-3
    passes = steps_512 * 64 * 50 / 1_000_000
    assert model.dropout == recipes.dropout_for(passes)
    assert recipe.rate_source == "cost model" and {"256", "384", "512"} <= set(recipe.rates)
    assert set(recipe.chosen) == set(LM_FIELDS) and "512" in recipe.reason and "passes" in recipe.reason


def test_a_longer_budget_never_chooses_a_narrower_model_and_a_smaller_corpus_more_dropout():
    widths = [_lm(b, chars=5_000_000)[0].hidden_size for b in (60, 120, 300, 600, 1800, 3600)]
    assert widths == sorted(widths) and widths[0] == 256 and widths[-1] > 512
    drops = [_lm(600, chars=c)[0].dropout for c in (20_000_000, 3_000_000, 1_000_000, 300_000, 50_000)]
    assert drops == sorted(drops) and drops[0] == 0.0 and drops[-1] == recipes.DROPOUT[-1][1]


def test_weight_decay_follows_the_passes_and_is_adamws_only():
    _, train, recipe = _lm(600)                              # a 2x512 GRU: about 5 passes over 1 M chars
    assert train.optimizer == "adamw" and train.weight_decay == 0.1 == recipe.chosen["weight_decay"]
    assert "weight decay 0.1" in recipe.reason
    _, train, recipe = _lm(None, steps=100)                  # 0.3 passes: nothing to regularise
    assert train.weight_decay == 0.0 and recipe.chosen["dropout"] == 0.0
    decays = [_lm(None, steps=s)[1].weight_decay for s in (100, 900, 1000, 5000)]    # 0.3 ... 16 passes
    assert decays == [0.0, 0.0, 0.1, 0.1]
    # with Adam or SGD a decay would be L2 through the gradient, which the rule was not measured for
    for opt in ("adam", "sgd"):
        _, train, recipe = _lm(600, optimizer=opt, lr=0.01)
        assert train.weight_decay == 0.0 and f"with {opt}" in recipe.reason
    # a decay the user gives is kept, and a TrainConfig given whole keeps its own
    _, train, recipe = _lm(600, auto=tuple(f for f in LM_FIELDS if f != "weight_decay"), weight_decay=0.01)
    assert train.weight_decay == 0.01 and "weight_decay" not in recipe.chosen and "given: weight_decay" in recipe.reason


def test_adamw_without_decay_is_adam():
    """The default optimizer is AdamW; with no decay (a TrainConfig given whole, old runs) it is Adam."""
    from rnnkit.training.trainer import make_optimizer
    torch.manual_seed(0)
    a = torch.nn.GRU(3, 5)
    b = torch.nn.GRU(3, 5)
    b.load_state_dict(a.state_dict())
    x = torch.randn(7, 2, 3)
    opts = [make_optimizer(m.parameters(), TrainConfig(lr=1e-2, optimizer=o)) for m, o in ((a, "adam"), (b, "adamw"))]
    for _ in range(3):
        for m, opt in zip((a, b), opts):
            opt.zero_grad()
            m(x)[0].square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_a_small_corpus_caps_the_width():
    model, _, recipe = _lm(3600, chars=300_000)            # an hour would take 768 wide; 384 is over the cap
    assert recipes.num_parameters(model) <= recipes.MAX_PARAMS_PER_CHAR * 300_000
    wider = recipes.num_parameters(ModelConfig(vocab_size=65, hidden_size=recipes.WIDTHS[1]))
    assert model.hidden_size == recipes.WIDTHS[0] and wider > recipes.MAX_PARAMS_PER_CHAR * 300_000
    assert "parameters per training char" in recipe.reason
    assert _lm(3600, chars=5_000_000)[0].hidden_size > recipes.WIDTHS[1]


def test_step_budgets_keep_the_base_width_and_given_fields_are_kept():
    model, train, _ = _lm(None, steps=40, chars=5_000)
    assert model.hidden_size == recipes.BASE_WIDTH and model.dropout == recipes.DROPOUT[-1][1]  # 64 passes
    given = ModelConfig(vocab_size=65, hidden_size=40, dropout=0.05)
    model, train, recipe = _lm(600, model=given, auto=("lr",), lr=None)
    assert (model.hidden_size, model.dropout, train.lr) == (40, 0.05, 5e-3)
    assert recipe.chosen == {"lr": 5e-3} and recipe.rates == {}
    assert "given: hidden_size" in recipe.reason


def test_scan_blocks_choose_from_their_own_widths_by_their_real_parameter_count():
    from rnnkit.nn.models import CharLM
    for cell in ("mingru", "rglru"):
        block = ModelConfig(vocab_size=65, cell=cell)
        model, _, _ = _lm(None, model=block, steps=40)
        assert model.hidden_size == recipes.BLOCK_BASE_WIDTH
        widths = [_lm(b, model=block, chars=5_000_000)[0].hidden_size for b in (60, 600, 3600)]
        assert widths == sorted(widths) and widths[0] == recipes.BLOCK_WIDTHS[0] < widths[-1]
        real = CharLM(ModelConfig(vocab_size=65, cell=cell, hidden_size=192)).num_parameters()
        assert recipes.num_parameters(ModelConfig(vocab_size=65, cell=cell, hidden_size=192)) == real
        # a block is slower than a GRU of its multiply-adds: the cost model says so
        macs = recipes.cost_per_char(cell, 2, 192, 64, 65)
        assert recipes.modelled_rate(cell, 2, 192, 64, 65) < recipes.COST_K * macs ** -recipes.COST_ALPHA
        capped, _, recipe = _lm(3600, model=block, chars=300_000)
        assert recipes.num_parameters(capped) <= recipes.MAX_PARAMS_PER_CHAR * 300_000
        assert capped.hidden_size < widths[-1] and "parameters per training char" in recipe.reason


def test_the_lstm_keeps_its_higher_learning_rate_when_wide():
    _, train, _ = _lm(600, model=ModelConfig(vocab_size=65, cell="lstm"))
    assert train.lr == 5e-3


def test_large_alphabets_get_the_low_learning_rate_and_short_runs_a_higher_one():
    big = ModelConfig(vocab_size=2583)
    _, train, recipe = _lm(600, model=big)
    assert train.lr == 1e-3 and "alphabet" in recipe.reason and "at least 1,000 steps" in recipe.reason
    _, train, recipe = _lm(120, model=big)                 # ~600 steps in 2 minutes
    assert train.lr == 2e-3 and "under 1,000 steps" in recipe.reason
    assert _lm(None, model=big, steps=999)[1].lr == 2e-3 and _lm(None, model=big, steps=1000)[1].lr == 1e-3
    # the width given, only the learning rate left to choose: the steps still decide it
    given = ModelConfig(vocab_size=2583, hidden_size=256, dropout=0.0)
    assert _lm(120, model=given, auto=("lr",))[1].lr == 2e-3 and _lm(3600, model=given, auto=("lr",))[1].lr == 1e-3
    assert _lm(120, model=ModelConfig(vocab_size=65), auto=("lr",))[1].lr == 5e-3   # other alphabets: no steps


def test_the_probe_times_real_steps_and_leaves_the_random_state_alone():
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    rate = recipes.probed_rate(ModelConfig(vocab_size=20, hidden_size=16, embed_size=8), 4, 10, CPU, steps=2,
                               min_time=0.0, warmup=1)
    assert rate > 0 and torch.equal(torch.random.get_rng_state(), before)


def test_the_probe_times_the_precision_training_will_use(monkeypatch):
    real, seen = recipes.probed_rate, []

    def probed_rate(cfg, batch, seq, device, *, precision="fp32", **_):
        seen.append(precision)
        return 30_000.0 * (256 / cfg.hidden_size) ** 2

    monkeypatch.setattr(recipes, "probed_rate", probed_rate)
    for precision in ("fp32", "bf16"):
        seen.clear()
        choose_lm(MODEL, TrainConfig(time_budget=600, precision=precision), LM_FIELDS, train_chars=10**6, device=CPU)
        assert seen and set(seen) == {precision}
    tiny = ModelConfig(vocab_size=20, hidden_size=16, embed_size=8)
    for precision in ("fp32", "bf16"):                  # the real probe runs in either
        assert real(tiny, 4, 10, CPU, steps=1, min_time=0.0, warmup=1, precision=precision) > 0


def test_cli_prints_and_records_the_recipe_and_resume_keeps_it(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", str(tiny_corpus), "--steps", "4", "--eval-every", "2", "--batch-size", "4", "--seq-len", "16",
            "--threads", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    line = next(m for m in err.splitlines() if m.startswith("recipe: "))
    run = json.loads((out / "run.json").read_text())
    recipe = run["recipe"]
    assert set(recipe["auto"]) == set(LM_FIELDS) - {"batch_size", "seq_len"}
    assert recipe["reason"] in line and run["model"]["dropout"] == recipe["chosen"]["dropout"]
    assert run["model"]["hidden_size"] == recipes.BASE_WIDTH and run["train"]["lr"] == recipe["chosen"]["lr"]
    assert run["train"]["weight_decay"] == recipe["chosen"]["weight_decay"]
    assert main(["train", "--resume", str(out), "--steps", "6", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "recipe: " not in err
    after = json.loads((out / "run.json").read_text())
    assert after["recipe"] == recipe and after["model"] == run["model"]


def test_cli_flags_and_toml_values_are_never_overridden(tiny_corpus, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\ndropout = 0.15\n[train]\nrecipe_probe = false\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", str(tiny_corpus), "--config", str(toml), "--hidden-size", "12", "--layers", "1",
                 "--embed-size", "4", "--lr", "0.01", "--time-budget", "1s", "--steps", "2", "--threads", "1",
                 "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    m, t = run["model"], run["train"]
    assert (m["hidden_size"], m["num_layers"], m["embed_size"], m["dropout"], t["lr"]) == (12, 1, 4, 0.15, 0.01)
    assert set(run["recipe"]["auto"]) == {"weight_decay", "batch_size", "seq_len"} and t["recipe_probe"] is False


# ----------------------------------------------------------------------------- classifiers

def test_classifier_recipe_from_the_number_of_texts():
    base = ClassifierConfig(), TextDataConfig(path="x.csv"), ClassifierTrainConfig()
    small = choose_classifier(*base, recipes.CLASSIFIER_FIELDS, train_texts=9_000, mean_words=20, has_budget=False)
    large = choose_classifier(*base, recipes.CLASSIFIER_FIELDS, train_texts=20_000, mean_words=230,
                              has_budget=False)
    (sm, sd, st, sr), (lm, ld, lt, _) = small, large
    assert sm.dropout > lm.dropout and sd.min_freq < ld.min_freq
    assert (sm.pooling, lm.pooling) == ("mean", "max") and sm.bidirectional and lm.bidirectional
    assert st.epochs > lt.epochs == 3 and st.patience == lt.patience == recipes.CLASSIFIER_PATIENCE
    assert "9,000 training texts" in sr.reason
    tiny = choose_classifier(*base, recipes.CLASSIFIER_FIELDS, train_texts=800, mean_words=200, has_budget=False)
    assert tiny[2].patience == 8 and "at least 100 steps" in tiny[3].reason      # 13 steps per epoch of 64
    budgeted = choose_classifier(*base, recipes.CLASSIFIER_FIELDS, train_texts=9_000, mean_words=20,
                                 has_budget=True)[2]
    assert budgeted.epochs is None and budgeted.patience is None


def test_naive_bayes_buckets_hold_twice_the_pairs_within_a_memory_cap():
    base = ClassifierConfig(), TextDataConfig(path="x.csv"), ClassifierTrainConfig()
    m, _, _, r = choose_classifier(*base, recipes.CLASSIFIER_FIELDS, train_texts=9_000, mean_words=20,
                                   has_budget=False, pair_types=100_000, classes=2)
    assert m.naive_bayes == 1 << 18 and "100,000 distinct word pairs" in r.reason
    assert recipes.naive_bayes_buckets(0, 2) == recipes.NB_MIN_BUCKETS
    assert recipes.naive_bayes_buckets(3_000_000, 2) * 2 == recipes.NB_CELLS          # capped: 16 MB of counts
    assert recipes.naive_bayes_buckets(3_000_000, 20) * 20 <= recipes.NB_CELLS
    given = choose_classifier(ClassifierConfig(naive_bayes=0), *base[1:], ("pooling",), train_texts=9_000,
                              mean_words=20, has_budget=False, pair_types=100_000)[0]
    assert given.naive_bayes == 0                                                     # a given value stays
    seqs = [torch.tensor([2, 3, 2, 3]), torch.tensor([3, 2]), torch.tensor([5])]
    assert recipes.pair_types(seqs) == 2                                              # (2, 3) and (3, 2)


def _csv(path, n):
    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            word = rng.choice(["great", "superb"] if i % 2 else ["awful", "boring"])
            w.writerow([f"the film was {word} and long", "pos" if i % 2 else "neg"])
    return path


def test_classify_cli_without_a_budget_trains_epochs_with_patience_within_the_default_time(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["classify", "train", str(_csv(tmp_path / "d.csv", 60)), "--hidden-size", "8", "--embed-size", "8",
                 "--threads", "1", "--out", str(out), "--quiet", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    run = json.loads((out / "run.json").read_text())
    patience = recipes.PATIENCE_STEPS                 # 48 training texts: one step per epoch
    assert run["train"]["epochs"] == recipes.MAX_EPOCHS and run["train"]["patience"] == patience
    assert run["train"]["time_budget"] == 900.0 and run["model"]["bidirectional"] is True
    assert run["data"]["min_freq"] == 1 and run["patience"] == patience
    assert run["model"]["naive_bayes"] == recipes.NB_MIN_BUCKETS and "naive_bayes" in summary
    assert run["model"]["pooling"] == "mean" and run["model"]["hidden_size"] == 8     # given: kept
    assert set(run["recipe"]["auto"]) == set(recipes.CLASSIFIER_FIELDS)
    assert "recipe: " in captured.err and summary["epochs"] <= recipes.MAX_EPOCHS
    assert summary["stopped_early"] or summary["epochs"] == recipes.MAX_EPOCHS


def test_classify_cli_given_values_win_over_the_recipe(tmp_path):
    out = tmp_path / "run"
    assert main(["classify", "train", str(_csv(tmp_path / "d.csv", 40)), "--min-freq", "3", "--dropout", "0.1",
                 "--pooling", "last", "--epochs", "2", "--hidden-size", "8", "--embed-size", "8", "--threads", "1",
                 "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["data"]["min_freq"], run["model"]["dropout"], run["model"]["pooling"]) == (3, 0.1, "last")
    assert run["train"]["epochs"] == 2 and run["train"]["patience"] is None and run["train"]["time_budget"] is None
    assert set(run["recipe"]["auto"]) == {"bidirectional", "naive_bayes", "patience"}
    assert run["recipe"]["chosen"] == {"bidirectional": True, "naive_bayes": recipes.NB_MIN_BUCKETS}
