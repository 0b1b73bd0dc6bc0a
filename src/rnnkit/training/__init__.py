"""Layer 4, training: the task-agnostic trainer, the one run lifecycle, and the two tasks on it (character
language models, sequence classifiers); distributed training goes here too."""
