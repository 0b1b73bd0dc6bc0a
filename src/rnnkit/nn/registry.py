"""The cell registry: every recurrent cell type is declared here once, and everything else reads its entry.

An entry says what the cell is (its scratch class, the fused torch.nn layer with the same parameters if
there is one), what its state is made of (named parts, any number), its gate names, its own
hyperparameters with their defaults, whether classifiers may use it, and the fast generation step that
mirrors its fused CPU kernel. Adding a cell type is one ``register(CellSpec(...))`` plus the cell's code:
``--cell``, ``ModelConfig`` validation, model building, state handling, checkpoints, sampling and help
text all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

from . import blocks, cells, fused, steps


@dataclass(frozen=True)
class CellSpec:
    name: str                                # the --cell value and run.json's model.cell
    scratch: type                            # rnnkit's own cell: cells.Cell's interface (project/recur/unroll)
    about: str = ""                          # one line for --help
    fused: Optional[type] = None             # torch.nn layer with the same parameters; None: scratch only
    state: tuple[str, ...] = ("h",)          # names of the state's parts, in order; the first is the output
    gates: tuple[str, ...] = ()              # gate blocks in weight order (LSTM: i f g o)
    options: Mapping[str, Any] = field(default_factory=dict)   # the cell's own hyperparameters: defaults
    classifier: bool = False                 # whether sequence classifiers may use it
    fast_step: Optional[Callable] = None     # the fused CPU kernel's step, op for op (steps.py); None: no fast path
    scan: bool = False                       # trains with a parallel scan over time (backend fused) or the loop
                                             # (scratch); its class takes ``parallel=``

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        if self.scan and self.fused is not None:
            raise ValueError(f"cell {self.name!r}: a scan cell runs its own parallel form; it has no fused layer")
        if not self.state:
            raise ValueError(f"cell {self.name!r}: its state needs at least one part")
        if self.classifier and self.fused is None and not self.scan:
            raise ValueError(f"cell {self.name!r}: classifiers run fused layers; give it one or classifier=False")

    def resolve_options(self, given: Optional[Mapping[str, Any]]) -> dict[str, Any]:
        """The cell's hyperparameters: its defaults updated with ``given``, checked by name and type.
        Raises ValueError naming the option and what fits."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ValueError(f"cell {self.name} has no option {', '.join(unknown)} (its options: {known})")
        out = dict(self.options)
        for key, value in given.items():
            default = out[key]
            if isinstance(default, bool) != isinstance(value, bool) or (
                    isinstance(default, (int, float)) and not isinstance(value, (int, float))) or (
                    isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float)):
                kind = {"bool": "true or false", "int": "an integer", "float": "a number"}.get(
                    type(default).__name__, type(default).__name__)
                raise ValueError(f"cell option {key} must be {kind} like its default {default!r}, got {value!r}")
            out[key] = value
        return out


_REGISTRY: dict[str, CellSpec] = {}


def register(spec: CellSpec) -> CellSpec:
    """Add a cell type (a name may be declared once)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"cell {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a cell type registered at run time (tests declare cells of their own)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> CellSpec:
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown cell {name!r}; choose from {', '.join(_REGISTRY)}")
    return spec


def names(*, classifier: Optional[bool] = None) -> tuple[str, ...]:
    """Registered cell names, in registration order; ``classifier=True``: those classifiers may use."""
    return tuple(n for n, s in _REGISTRY.items() if classifier is None or s.classifier == classifier)


def describe(*, classifier: Optional[bool] = None) -> str:
    """``elman (sigmoid, Mikolov 2010), rnn (tanh), ...`` for help texts."""
    return ", ".join(f"{n} ({_REGISTRY[n].about})" if _REGISTRY[n].about else n for n in names(classifier=classifier))


register(CellSpec("elman", cells.ElmanCell, "sigmoid state, Mikolov 2010; scratch only"))
register(CellSpec("rnn", cells.RNNCell, "tanh", fused=fused.RNN, classifier=True, fast_step=steps.rnn_step))
register(CellSpec("lstm", cells.LSTMCell, "Hochreiter & Schmidhuber 1997", fused=fused.LSTM, state=("h", "c"),
                  gates=("i", "f", "g", "o"), classifier=True, fast_step=steps.lstm_step))
register(CellSpec("gru", cells.GRUCell, "Cho et al. 2014", fused=fused.GRU, gates=("r", "z", "n"),
                  classifier=True, fast_step=steps.gru_step))
register(CellSpec("mingru", blocks.MinGRUBlock, "Feng et al. 2024, residual blocks; parallel scan (fused) or loop",
                  state=("y", "h", "conv"), gates=("z",), options={"expansion": 1.5, "conv": 4, "mlp": 4},
                  scan=True, classifier=True))
register(CellSpec("rglru", blocks.RGLRUBlock, "De et al. 2024 (Griffin), residual blocks; parallel scan (fused) or loop",
                  state=("y", "h", "conv"), gates=("r", "i"), options={"expansion": 1.5, "conv": 4, "mlp": 4},
                  scan=True, classifier=True))
