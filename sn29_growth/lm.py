"""Plain language-model loss on a list of texts: the simple reference used by growth checks and demos.

The validator-exact, batched, cached engine lives in :mod:`sn29_growth.eval`; this module is the naive
batch-size-1 loop that the engine is tested against, and the measure used to prove growth exactness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def encode(
    tokenizer, texts: Sequence[str], max_len: int = 512, append_eos: bool = True
) -> list[torch.Tensor]:
    """Token ids per text (EOS appended), truncated to ``max_len`` ids."""
    out = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        if append_eos and tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        out.append(torch.tensor(ids[:max_len], dtype=torch.long))
    return out


@dataclass(frozen=True)
class CorpusLoss:
    mean_token_loss: float
    summed_losses: tuple[float, ...]
    tokens: int


@torch.no_grad()
def corpus_loss(model, sequences: Sequence[torch.Tensor]) -> CorpusLoss:
    """Summed cross-entropy per sequence and the mean per predicted token, batch size 1."""
    device = next(model.parameters()).device
    sums = []
    n = 0
    for ids in sequences:
        ids = ids.to(device)[None]
        logits = model(input_ids=ids).logits[0, :-1].float()
        loss = F.cross_entropy(logits, ids[0, 1:], reduction="sum")
        sums.append(loss.item())
        n += ids.shape[1] - 1
    return CorpusLoss(sum(sums) / max(n, 1), tuple(sums), n)
