"""The SN29 miner: find the base → grow within the limits → train → would it win? → upload and commit.

Modules: :mod:`.config` (settings), :mod:`.base` (the current best on chain, or a named model),
:mod:`.plan` (growth within the competition's limits, loss verified), :mod:`.wins` (the validator's
evaluation and scoring, with the older model's advantage), :mod:`.publish` (private upload → chain
commitment → read back → public, resumable), :mod:`.offline` (a chain in a file), :mod:`.run`
(:func:`run_miner`), :mod:`.cli` (``neurons/miner.py``).
"""

from sn29_growth.miner.config import MinerConfig
from sn29_growth.miner.run import MinerClients, MinerReport, run_miner

__all__ = ["MinerClients", "MinerConfig", "MinerReport", "run_miner"]
