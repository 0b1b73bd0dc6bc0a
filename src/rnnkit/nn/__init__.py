"""Layer 0, models: cells written as equations, recurrent layers, the cell registry, state helpers and
device/precision helpers. Imports only torch (and NumPy in ``bptt``)."""
