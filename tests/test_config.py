import pytest

from rnnkit.config import (ConfigError, DataConfig, ModelConfig, SampleConfig, TrainConfig, from_dict,
                           parse_duration, to_dict)


def test_configs_round_trip_through_dicts():
    for cfg in (ModelConfig(vocab_size=7, cell="gru"), DataConfig(corpus="moliere", limit_chars=10),
                TrainConfig(steps=5, lr=0.1), SampleConfig(top_k=3)):
        assert from_dict(type(cfg), to_dict(cfg)) == cfg


def test_configs_are_frozen():
    with pytest.raises(Exception):
        ModelConfig().hidden_size = 3  # type: ignore[misc]


@pytest.mark.parametrize("make", [
    lambda: ModelConfig(cell="transformer"),
    lambda: ModelConfig(hidden_size=0),
    lambda: ModelConfig(dropout=1.0),
    lambda: TrainConfig(batch_size=0),
    lambda: TrainConfig(lr=-1.0),
    lambda: TrainConfig(lr=float("nan")),
    lambda: TrainConfig(time_budget=0),
    lambda: TrainConfig(steps=-3),
    lambda: SampleConfig(temperature=-0.1),
    lambda: SampleConfig(top_p=0.0),
    lambda: SampleConfig(top_p=1.5),
    lambda: SampleConfig(top_k=0),
    lambda: DataConfig(val_fraction=1.0),
])
def test_invalid_values_are_refused_with_the_field_name(make):
    with pytest.raises(ConfigError) as e:
        make()
    assert "must" in str(e.value)


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="hiden_size"):
        from_dict(ModelConfig, {"hiden_size": 3})


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("2.5m", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "-5m", "0"])
def test_bad_durations(text):
    with pytest.raises(ConfigError):
        parse_duration(text)
