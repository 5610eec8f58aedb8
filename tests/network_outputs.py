"""The folders a miner would upload, built from fixed seeds through OUR tools, cached per session.

For each architecture (:data:`ARCHS`: a GQA Llama with Llama-3 rope scaling, and Phi3):

- ``base``: ``build_tiny`` saved with :func:`~sn29_growth.checkpoint.save_model` (embedded tokenizer);
- ``grown``: :func:`~sn29_growth.growth.execute.grow_checkpoint` in every dimension at once — hidden
  64→128 by the ``divisor`` method (``norm_divisor`` in the config) with heads and kv heads doubled
  (head_dim kept), MLP doubled, one more layer;
- ``trained``: :func:`sn29_growth.train.train` a few steps from ``grown``;
- ``stock``: :func:`sn29_growth.convert.to_stock` of ``grown`` (no ``norm_divisor``);
- ``vocab``: ``grown`` with the vocabulary grown 1024 → 1100 (tokenizer tokens added).

Also the counter-examples a transformers-5 user would produce by hand (:func:`transformers5_folder`):
``model.save_pretrained`` + ``tokenizer.save_pretrained`` directly.

Models start from init std 0.1 (as the growth tests' ``tiny``) so that they compute a non-trivial
function and a wrong RoPE or norm changes the loss visibly.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

ARCHS = ("llama", "phi3")
KINDS = ("base", "grown", "trained", "stock", "vocab")
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
LLAMA_THETA = 500000.0
INIT_STD = 0.1
GROWN_VOCAB = 1100

_ROOT: Path | None = None


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="sn29-network-outputs-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


def tiny_model(arch: str):
    """The base model of ``arch`` (fixed seed 0)."""
    from sn29_growth.tiny import build_tiny

    if arch == "llama":
        return build_tiny(
            "llama-gqa", seed=0, init_std=INIT_STD, rope_theta=LLAMA_THETA, rope_scaling=dict(LLAMA3_ROPE)
        )
    if arch == "phi3":
        return build_tiny("phi3", seed=0, init_std=INIT_STD)
    raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")


def growth_spec(arch: str):
    """Hidden 64→128 (divisor) with proportional heads, MLP ×2, one more layer."""
    from sn29_growth.growth.spec import GrowthSpec, GrowthStep

    heads = {"llama": (16, 4), "phi3": (8, 8)}[arch]  # llama-gqa 8/2 heads, phi3 4/4: doubled
    step = GrowthStep(
        hidden_size=128,
        num_attention_heads=heads[0],
        num_key_value_heads=heads[1],
        intermediate_size=320,
        num_hidden_layers=3,
        hidden_method="divisor",
    )
    return GrowthSpec((step,), seed=0)


def train_config():
    from sn29_growth.train import BatchConfig, CheckpointConfig, OptimizerConfig, ScheduleConfig, TrainConfig

    return TrainConfig(
        steps=4,
        eval_every=0,
        optimizer=OptimizerConfig(lr=3e-3),
        schedule=ScheduleConfig(warmup_steps=1),
        batch=BatchConfig(batch_size=4, seq_len=32, eval_windows=4),
        checkpoint=CheckpointConfig(save_every=0),
        device="cpu",
        progress=False,
    )


def build_outputs(root: Path, arch: str) -> dict[str, Path]:
    """Build every output of ``arch`` under ``root`` (a fresh folder); returns ``{kind: folder}``."""
    from sn29_growth.checkpoint import save_model
    from sn29_growth.convert import to_stock
    from sn29_growth.growth.execute import grow_checkpoint
    from sn29_growth.growth.spec import GrowthSpec, GrowthStep
    from sn29_growth.tokenizer import embedded_tokenizer
    from sn29_growth.train import train
    from sn29_growth.train.checkpoint import quiet_hf_progress

    root.mkdir(parents=True, exist_ok=True)
    out = {kind: root / f"{arch}-{kind}" for kind in KINDS}
    with quiet_hf_progress():
        save_model(tiny_model(arch), out["base"], tokenizer=embedded_tokenizer())
        grow_checkpoint(out["base"], out["grown"], growth_spec(arch))
        train(out["grown"], out["trained"], train_config())
        to_stock(out["grown"], out["stock"])
        grow_checkpoint(out["grown"], out["vocab"], GrowthSpec((GrowthStep(vocab_size=GROWN_VOCAB),), seed=0))
    return out


@functools.cache
def network_outputs(arch: str) -> dict[str, Path]:
    """:func:`build_outputs` of ``arch``, built once per process into a temporary folder (do not modify)."""
    return build_outputs(_root() / arch, arch)


def all_outputs() -> dict[str, Path]:
    """``{"<arch>-<kind>": folder}`` for every architecture and kind."""
    return {f"{arch}-{kind}": path for arch in ARCHS for kind, path in network_outputs(arch).items()}


def transformers5_folder(root: Path, arch: str) -> Path:
    """The base model of ``arch`` saved the transformers-5 way: ``save_pretrained`` of model and tokenizer."""
    from sn29_growth.tokenizer import embedded_tokenizer
    from sn29_growth.train.checkpoint import quiet_hf_progress

    path = root / f"{arch}-transformers5"
    with quiet_hf_progress():
        tiny_model(arch).save_pretrained(path)
        embedded_tokenizer().save_pretrained(path)
    return path


def transformers5_config_folder(root: Path, arch: str) -> Path:
    """The base model with transformers 5's ``config.json`` (``rope_parameters``, ``dtype``) but our
    network-form tokenizer files: 4.44 loads it, and runs it with ``rope_theta`` 10000, no scaling."""
    path = root / f"{arch}-transformers5-config"
    v5 = transformers5_folder(root / "v5-source", arch)
    path.mkdir(parents=True)
    for item in v5.iterdir():
        if item.name == "config.json" or item.suffix == ".safetensors":
            shutil.copy2(item, path / item.name)
    for item in network_outputs(arch)["base"].iterdir():
        if item.name.startswith("tokenizer") or item.name == "special_tokens_map.json":
            shutil.copy2(item, path / item.name)
    return path


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
