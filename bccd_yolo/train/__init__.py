"""Stage plan -> training run -> weights: the staged fine-tune."""
