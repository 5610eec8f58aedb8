"""Convert between the SN29 ``norm_divisor`` form and a stock Llama/Phi3 checkpoint.

``sqrt(Σx²/D + eps) = sqrt(d/D) · sqrt(Σx²/d + eps·D/d)``: a model with ``norm_divisor = D`` at hidden
size ``d`` is exactly the stock model with every RMSNorm gain ``g·sqrt(D/d)`` and ``eps·D/d``. The
conversion rewrites one shard at a time, in fp32, and casts once; in bf16 the rescaled gains round, and
the largest relative rounding error is reported.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sn29_growth.atomic import atomic_directory
from sn29_growth.checkpoint import CONFIG_FILE, check_destination, read_model_config, write_config
from sn29_growth.io import CheckpointError, ShardedCheckpoint
from sn29_growth.loading import ModelLoadError, check_norm_divisor, safetensors_files
from sn29_growth.norm import validate_norm_divisor

NORM_WEIGHT = re.compile(r"(^|\.)(input_layernorm|post_attention_layernorm|norm)\.weight$")


@dataclass(frozen=True)
class ConversionReport:
    direction: str
    hidden_size: int
    norm_divisor: float
    gain_factor: float
    rms_norm_eps: float
    norm_tensors: int
    dtype: str
    max_relative_rounding_error: float

    def to_dict(self) -> dict:
        return asdict(self)


def is_norm_weight(name: str) -> bool:
    return bool(NORM_WEIGHT.search(name))


def _rewrite(src: Path, dst: Path, factor: float, config: dict) -> tuple[int, float, str]:
    """Copy ``src`` into ``dst`` with every norm gain multiplied by ``factor``; returns stats.

    The shards are the ones the index names (checked first: a missing or partial shard is an error, and
    nothing is written); a folder without an index has exactly one ``model.safetensors``.
    """
    try:
        shards = ShardedCheckpoint(src).files
    except CheckpointError as e:
        raise ModelLoadError(str(e)) from None
    count, worst, dtype = 0, 0.0, "float32"
    for shard in shards:
        tensors = {}
        with safe_open(str(shard), framework="pt") as f:
            metadata = f.metadata()
            for name in f.keys():
                t = f.get_tensor(name)
                if is_norm_weight(name):
                    exact = t.to(torch.float64) * factor
                    t = exact.to(t.dtype)
                    rel = ((t.to(torch.float64) - exact).abs() / exact.abs().clamp_min(1e-30)).max().item()
                    worst = max(worst, rel)
                    count += 1
                    dtype = str(t.dtype).removeprefix("torch.")
                tensors[name] = t.contiguous()
        save_file(tensors, str(dst / shard.name), metadata=metadata or {"format": "pt"})
        del tensors
    for item in src.iterdir():
        if item.suffix == ".safetensors" or item.name == CONFIG_FILE or item.name.startswith("."):
            continue
        if item.is_file():
            shutil.copy2(item, dst / item.name)
    write_config(dst, config)
    return count, worst, dtype


def _load_raw(src: Path, dst: Path) -> dict:
    check_destination(src, dst)
    config = read_model_config(src)
    check_norm_divisor(config, str(src))
    if config.get("model_type") not in ("llama", "phi3"):
        raise ModelLoadError(f"{src}: model_type {config.get('model_type')!r} is not llama or phi3")
    if not safetensors_files(src):
        raise ModelLoadError(f"{src}: no *.safetensors weights")
    return config


def to_stock(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> ConversionReport:
    """Fold ``norm_divisor`` into the gains and eps; the result runs on plain transformers."""
    src, dst = Path(src), Path(dst)
    config = _load_raw(src, dst)
    divisor = config.get("norm_divisor")
    if divisor is None:
        raise ValueError(f"{src}: config has no norm_divisor; it is already a stock checkpoint")
    d = int(config["hidden_size"])
    factor = math.sqrt(float(divisor) / d)
    eps = float(config.get("rms_norm_eps", 1e-6)) * float(divisor) / d
    new_config = {k: v for k, v in config.items() if k != "norm_divisor"}
    new_config["rms_norm_eps"] = eps
    with atomic_directory(dst, overwrite=overwrite) as tmp:
        count, worst, dtype = _rewrite(src, tmp, factor, new_config)
    return ConversionReport("to-stock", d, float(divisor), factor, eps, count, dtype, worst)


def to_divisor(
    src: str | Path, dst: str | Path, norm_divisor: float, *, overwrite: bool = False
) -> ConversionReport:
    """The inverse: express a stock checkpoint with ``norm_divisor = D`` (gains ÷ sqrt(D/d), eps·d/D)."""
    src, dst = Path(src), Path(dst)
    validate_norm_divisor(norm_divisor)
    config = _load_raw(src, dst)
    if config.get("norm_divisor") is not None:
        raise ValueError(
            f"{src}: config already has norm_divisor={config['norm_divisor']}; convert it to stock first"
        )
    d = int(config["hidden_size"])
    factor = math.sqrt(d / float(norm_divisor))
    eps = float(config.get("rms_norm_eps", 1e-6)) * d / float(norm_divisor)
    new_config = dict(config, norm_divisor=norm_divisor, rms_norm_eps=eps)
    with atomic_directory(dst, overwrite=overwrite) as tmp:
        count, worst, dtype = _rewrite(src, tmp, factor, new_config)
    return ConversionReport("to-divisor", d, float(norm_divisor), factor, eps, count, dtype, worst)


@dataclass(frozen=True)
class NetworkConversion:
    """What ``--to-network`` changed, and the network check of the folder before and after."""

    changed: tuple[str, ...]
    before: tuple[str, ...]  # findings (formatted) of the source
    after: tuple[str, ...]  # findings left in the result
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)


def to_network(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> NetworkConversion:
    """Write ``src`` in the network's format: ``config.json`` in the keys transformers 4.44 reads (with the
    meaning transformers 5 gives them) and tokenizer files tokenizers 0.19 loads; weights and every other
    file are linked (or copied) unchanged. For checkpoints saved by transformers 5 itself."""
    import os

    from sn29_growth.network.rules import check_model
    from sn29_growth.network.tokenizer import normalize_tokenizer_dir

    src, dst = Path(src), Path(dst)
    check_destination(src, dst)
    config = read_model_config(src)
    before = check_model(src)
    with atomic_directory(dst, overwrite=overwrite) as tmp:
        for item in sorted(src.iterdir()):
            if item.is_file() and not item.name.startswith("."):
                try:
                    os.link(item, tmp / item.name)
                except OSError:
                    shutil.copy2(item, tmp / item.name)
        written = write_config(tmp, config)  # atomic: replaces the link, never writes through it
        changed = ([CONFIG_FILE] if written != config else []) + normalize_tokenizer_dir(tmp)
    after = check_model(dst)
    return NetworkConversion(
        tuple(changed),
        tuple(f.format() for f in before.findings),
        tuple(f.format() for f in after.findings),
        after.ok,
    )
