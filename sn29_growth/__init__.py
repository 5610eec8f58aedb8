"""sn29-growth: grow, train, evaluate and score models for Bittensor subnet 29 (coldint)."""

__version__ = "0.1.0"
