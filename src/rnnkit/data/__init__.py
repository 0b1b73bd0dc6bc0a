"""Layer 2, data: reading text, character and word vocabularies, streams for truncated BPTT, labelled
texts and their padded batches. Bundled corpora live in ``corpora/``."""
