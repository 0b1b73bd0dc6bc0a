"""Layer 4, inference: sampling (with the fast batch-1 path) and classifier predictions; beam search and
export go here too."""
