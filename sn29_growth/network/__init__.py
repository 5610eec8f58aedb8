"""The network's stack: write what live SN29 validators (transformers 4.44) load and score as we do.

- :mod:`~sn29_growth.network.config`: ``config.json`` keys in the network's form, and as it reads them;
- :mod:`~sn29_growth.network.tokenizer`: tokenizer files in a form tokenizers 0.19 loads;
- :mod:`~sn29_growth.network.rules`: the pure rule set behind ``sn29 check``;
- :mod:`~sn29_growth.network.parity`: the proof, loading our outputs with the real transformers 4.44.
"""

from sn29_growth.network.config import (
    NETWORK_TOKENIZERS,
    NETWORK_TRANSFORMERS,
    NetworkFormatError,
    as_network_reads,
    network_config,
)
from sn29_growth.network.rules import Finding, NetworkCheck, check_model, config_findings, tokenizer_findings

__all__ = [
    "NETWORK_TOKENIZERS",
    "NETWORK_TRANSFORMERS",
    "Finding",
    "NetworkCheck",
    "NetworkFormatError",
    "as_network_reads",
    "check_model",
    "config_findings",
    "network_config",
    "tokenizer_findings",
]
