"""``sn29 demo``: the whole product on the embedded default — no chain, no Hub, no GPU.

Steps: build tiny Llama and Phi3 base models from a fixed seed, save them in the SN29 checkpoint
format, reload them through the patched classes and measure their loss on the embedded corpus's
held-out part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sn29_growth.corpus import load_corpus
from sn29_growth.lm import corpus_loss, encode
from sn29_growth.loading import load_model
from sn29_growth.tiny import build_tiny
from sn29_growth.tokenizer import embedded_tokenizer

log = logging.getLogger(__name__)

FAMILIES = {"llama": "llama-gqa", "phi3": "phi3"}


@dataclass
class DemoReport:
    out_dir: Path
    rows: list[dict] = field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)
        log.debug("%s", "  ".join(f"{k}={v}" for k, v in row.items()))


def held_out_sequences(tokenizer, max_samples: int = 32, max_len: int = 256):
    texts = [s.text for s in load_corpus().held_out[:max_samples]]
    return encode(tokenizer, texts, max_len=max_len)


def build_base_models(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Save a tiny Llama and a tiny Phi3 (with the embedded tokenizer); returns their directories."""
    tokenizer = embedded_tokenizer()
    paths = {}
    for family, variant in FAMILIES.items():
        path = out_dir / f"base-{family}"
        if not (path / "config.json").exists():
            model = build_tiny(variant, seed=seed, init_std=0.1)
            model.save_pretrained(path)
            tokenizer.save_pretrained(path)
        paths[family] = path
    return paths


def run_demo(out_dir: str | Path, seed: int = 0) -> DemoReport:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out_dir)
    tokenizer = embedded_tokenizer()
    seqs = held_out_sequences(tokenizer)
    print(f"[1/1] base models: tiny Llama and Phi3 from seed {seed}, saved under {out_dir}")
    for family, path in build_base_models(out_dir, seed).items():
        model = load_model(path)
        loss = corpus_loss(model, seqs)
        params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        report.add(
            step="base",
            family=family,
            path=str(path),
            cls=type(model).__module__ + "." + type(model).__name__,
            parameters=params,
            held_out_loss=round(loss.mean_token_loss, 6),
            tokens=loss.tokens,
        )
        print(
            f"      {family:<6} {type(model).__name__:<18} {params:>9,} params  held-out loss "
            f"{loss.mean_token_loss:.4f} over {loss.tokens} tokens"
        )
    return report
