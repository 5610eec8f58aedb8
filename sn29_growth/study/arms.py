"""The starting checkpoint of each arm: the base model, a grown base model, or a model from scratch.

Depth ``copy`` (non-preserving stacking, as in G_stack / SOLAR) is built from an identity-block growth:
each inserted block already is a copy of its neighbour with ``o_proj``/``down_proj`` zeroed, so copying
the neighbour's writers back turns it into a plain copy. The block stays marked new in the recipe, so it
gets the same learning-rate re-warm as an identity block.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sn29_growth.atomic import atomic_write_bytes
from sn29_growth.checkpoint import CONFIG_FILE, RECIPE_FILE, save_model
from sn29_growth.growth.execute import grow_checkpoint
from sn29_growth.growth.resolve import GrowthPlan
from sn29_growth.growth.spec import GrowthSpec, GrowthStep
from sn29_growth.study.config import ArmConfig, BaseConfig
from sn29_growth.tiny import build_tiny
from sn29_growth.tokenizer import embedded_tokenizer

log = logging.getLogger(__name__)

WRITERS = ("self_attn.o_proj.weight", "self_attn.o_proj.bias", "mlp.down_proj.weight", "mlp.down_proj.bias")


@dataclass(frozen=True)
class Prepared:
    """An arm's starting checkpoint and how long it took to make (0 when reused)."""

    model_dir: Path
    seconds: float
    copied_blocks: tuple[tuple[int, int], ...] = ()  # (inserted block, the block it copies)


@dataclass(frozen=True)
class Vocabulary:
    """The models' vocabulary: config overrides (``vocab_size``, EOS id) and the tokenizer saved with
    every checkpoint. The default is the embedded tokenizer and the tiny configs' vocabulary."""

    overrides: tuple[tuple[str, int], ...] = ()
    tokenizer: object | None = None

    def make_tokenizer(self):
        return self.tokenizer if self.tokenizer is not None else embedded_tokenizer()


def save_tiny(model: torch.nn.Module, path: Path, vocab: Vocabulary | None = None) -> Path:
    """Save a model with its tokenizer (the study's checkpoint format)."""
    save_model(model, path, tokenizer=(vocab or Vocabulary()).make_tokenizer())
    return path


def build_base(base: BaseConfig, seed: int, path: Path, vocab: Vocabulary | None = None) -> Path:
    """The untrained base model of ``seed`` at ``path`` (kept if it is already there)."""
    vocab = vocab or Vocabulary()
    if not (path / CONFIG_FILE).is_file():
        shape = {**dict(vocab.overrides), **base.shape}
        save_tiny(build_tiny(base.variant, seed=seed, init_std=base.init_std, **shape), path, vocab)
    return path


def build_scratch(
    base: BaseConfig, target: dict[str, int], seed: int, path: Path, vocab: Vocabulary | None = None
) -> Path:
    """A fresh model of the target shape, initialised like the base model was (same variant, seed)."""
    vocab = vocab or Vocabulary()
    if not (path / CONFIG_FILE).is_file():
        shape = {**dict(vocab.overrides), **base.shape, **target}
        save_tiny(build_tiny(base.variant, seed=seed, init_std=base.init_std, **shape), path, vocab)
    return path


def growth_spec(arm: ArmConfig, target: dict[str, int], seed: int) -> GrowthSpec:
    step = GrowthStep(
        hidden_method=arm.hidden_method,
        init=arm.init,
        noise=arm.noise,
        layer_placement=arm.layer_placement,
        **target,
    )
    return GrowthSpec((step,), seed=seed)


def inserted_pairs(plan: GrowthPlan) -> list[tuple[int, int]]:
    """(inserted output block, output block of the source layer it copies) for a one-step plan."""
    if len(plan.steps) != 1:
        raise ValueError("depth copy: the study grows in exactly one step")
    layers = plan.steps[0].layers
    kept = {ls.source: i for i, ls in enumerate(layers) if not ls.inserted}
    return [(i, kept[ls.source]) for i, ls in enumerate(layers) if ls.inserted]


def copy_block_writers(model_dir: Path, pairs: list[tuple[int, int]]) -> None:
    """Overwrite each inserted block's o_proj/down_proj (and biases) with its neighbour's, in place."""
    from safetensors.torch import load_file, save

    files = sorted(model_dir.glob("*.safetensors"))
    tensors = {f: load_file(f) for f in files}
    where = {name: f for f, sd in tensors.items() for name in sd}
    changed: set[Path] = set()
    for inserted, source in pairs:
        for suffix in WRITERS:
            dst, src = f"model.layers.{inserted}.{suffix}", f"model.layers.{source}.{suffix}"
            if dst not in where:
                continue
            value = tensors[where[src]][src].clone()
            tensors[where[dst]][dst] = value
            changed.add(where[dst])
    for f in changed:
        atomic_write_bytes(f, save(tensors[f], metadata={"format": "pt"}))


def prepare_arm(
    arm: ArmConfig,
    base_dir: Path,
    base: BaseConfig,
    target: dict[str, int],
    seed: int,
    path: Path,
    vocab: Vocabulary | None = None,
) -> Prepared:
    """The checkpoint ``arm`` starts from (``path`` is used by grow and scratch arms)."""
    t0 = time.perf_counter()
    if arm.kind == "continue":
        return Prepared(base_dir, 0.0)
    if arm.kind == "scratch":
        return Prepared(build_scratch(base, target, seed, path, vocab), time.perf_counter() - t0)
    pairs: tuple[tuple[int, int], ...] = ()
    if not (path / RECIPE_FILE).is_file():
        report = grow_checkpoint(base_dir, path, growth_spec(arm, target, seed))
        if arm.depth == "copy":
            pairs = tuple(inserted_pairs(report.plan))
            if not pairs:
                log.warning("arm %s: depth copy but the target adds no blocks", arm.name)
            copy_block_writers(path, list(pairs))
    return Prepared(path, time.perf_counter() - t0, pairs)
