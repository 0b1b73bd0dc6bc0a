"""Layer 5, pictures of what a model does: loss curves of runs and gate saturation (``plots.py``,
matplotlib), a character model's surprisal, cell activations and gates on a text (``trace.py``), a
classifier's reading of a text word by word (``reading.py``), and the self-contained HTML page that shows
them (``page.py``)."""
