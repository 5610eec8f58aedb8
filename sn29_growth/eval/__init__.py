"""Evaluation core: competition config, data, tokenization, losses and the SN29 scoring rules."""
