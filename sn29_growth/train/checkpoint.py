"""Checkpoints that survive ``kill -9``, and the final model.

``OUT_DIR/checkpoints/step-00000042/`` holds the model (``save_pretrained``: config + safetensors, fp32),
``optimizer.pt`` (the full optimizer state keyed by parameter name), ``rng.pt`` (every rank's RNG
states) and ``trainer_state.json`` (step, tokens, data position, training time, the run's config). The
directory is written under a temporary name, every file is fsynced, and then it is renamed into place:
a checkpoint directory that exists is complete, and a run killed mid-save leaves only a hidden
``.step-….partial`` directory, which is ignored and cleaned up later. Only rank 0 writes; gathering the
full state dicts is collective, so every rank calls :func:`save_checkpoint`.

The learning-rate schedule is a pure function of the step (:mod:`sn29_growth.train.schedule`), so the
step is the whole scheduler state.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sn29_growth.atomic import atomic_directory, atomic_write_json
from sn29_growth.checkpoint import TOKENIZER_FILES, save_model
from sn29_growth.train.data import DataPosition
from sn29_growth.train.distributed import (
    DistContext,
    barrier,
    full_model_state,
    full_optimizer_state,
    gather_objects,
)

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
PREFIX = "step-"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class TrainerState:
    """Where a run stands after ``step`` optimizer steps."""

    step: int
    tokens: int
    position: DataPosition
    train_time_s: float
    world_size: int
    run: dict[str, Any] = field(default_factory=dict)  # the settings a resume must agree with

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["position"] = self.position.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerState:
        return cls(
            step=int(d["step"]),
            tokens=int(d["tokens"]),
            position=DataPosition.from_dict(d["position"]),
            train_time_s=float(d["train_time_s"]),
            world_size=int(d["world_size"]),
            run=dict(d.get("run", {})),
        )


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Silence transformers' per-file progress bars (load/save) for the duration."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(out_dir: str | os.PathLike, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}"


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def save_model_files(
    model: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    directory: Path,
    dtype: torch.dtype | None = None,
) -> None:
    """The model files of ``state_dict`` (cast to ``dtype`` when given), config in the network's format."""
    with quiet_hf_progress():
        save_model(model, directory, state_dict=state_dict, dtype=dtype)


class DiskFull(RuntimeError):
    """A checkpoint or the final model did not fit on the disk; the message says where and what to do."""


def _free_bytes(directory: Path) -> int:
    probe = Path(directory).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch's zip writer reports a short write as "[enforce fail at inline_container.cc] unexpected pos"
    return "No space left on device" in str(error) or "unexpected pos" in str(error)


@contextlib.contextmanager
def naming_a_full_disk(what: str, directory: Path, needed: int) -> Iterator[None]:
    """Check the disk has room for ``needed`` bytes first, and turn a write that runs out of space into
    :class:`DiskFull` naming the directory (not ``unexpected pos`` from deep inside torch)."""
    advice = "free some space (or choose another OUT_DIR) and run the same command with --resume"
    free = _free_bytes(directory)
    if free < needed:
        raise DiskFull(
            f"not enough disk space for {what} in {directory}: about {needed:,} bytes needed, {free:,} free; "
            f"{advice}"
        )
    try:
        yield
    except (OSError, RuntimeError) as e:
        if not _is_disk_full(e):
            raise
        raise DiskFull(
            f"the disk holding {directory} ran out of space while writing {what}; nothing partial was "
            f"kept and earlier checkpoints are intact; {advice}"
        ) from e


def _state_bytes(*states: dict) -> int:
    total = 0
    for state in states:
        stack = [state]
        while stack:
            item = stack.pop()
            if isinstance(item, torch.Tensor):
                total += item.numel() * item.element_size()
            elif isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list | tuple):
                stack.extend(item)
    return total


def save_checkpoint(
    out_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    ctx: DistContext,
    keep: int,
) -> Path:
    """Write checkpoint ``state.step`` (collective; rank 0 writes) and prune to the newest ``keep``."""
    model_state = full_model_state(model, ctx)
    optim_state = full_optimizer_state(model, optimizer, ctx)
    rngs = gather_objects(rng_state(), ctx)
    target = checkpoint_dir(out_dir, state.step)
    if ctx.is_main:
        needed = _state_bytes(model_state, optim_state)
        with (
            naming_a_full_disk(f"checkpoint step {state.step}", target.parent, needed),
            atomic_directory(target, overwrite=True) as tmp,
        ):
            save_model_files(model, model_state, tmp)
            torch.save(optim_state, tmp / OPTIMIZER_FILE)
            torch.save({"ranks": rngs}, tmp / RNG_FILE)
            atomic_write_json(tmp / STATE_FILE, state.to_dict())
            _fsync_tree(tmp)
        prune_checkpoints(out_dir, keep)
        log.info("checkpoint: step %d -> %s", state.step, target)
    barrier(ctx)
    return target


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints and any leftover partial directories.

    Each is first renamed to a partial name, so that a deletion cut short (a second Ctrl-C, a kill)
    never leaves a half-deleted directory that still looks like a complete checkpoint."""
    for old in list_checkpoints(out_dir)[:-keep]:
        doomed = old.with_name(f".{old.name}.pruned.partial")
        try:
            os.replace(old, doomed)
        except OSError:
            doomed = old
        shutil.rmtree(doomed, ignore_errors=True)
    remove_partial_checkpoints(out_dir)


def remove_partial_checkpoints(out_dir: Path) -> None:
    """Remove what a save killed midway left behind (never a complete checkpoint)."""
    for stale in (Path(out_dir) / CHECKPOINTS).glob(f".{PREFIX}*.partial"):
        shutil.rmtree(stale, ignore_errors=True)


def read_checkpoint(path: Path) -> tuple[TrainerState, dict, list[dict[str, Any]]]:
    """The trainer state, the full optimizer state and the per-rank RNG states of a checkpoint."""
    state = TrainerState.from_dict(json.loads((path / STATE_FILE).read_text(encoding="utf-8")))
    optim_state = torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    rngs = torch.load(path / RNG_FILE, map_location="cpu", weights_only=True)["ranks"]
    return state, optim_state, rngs


def write_final_model(
    out_dir: Path,
    model: torch.nn.Module,
    model_dir: Path,
    ctx: DistContext,
    dtype: torch.dtype,
) -> None:
    """Save the trained model into ``out_dir`` itself (loadable with ``load_model(out_dir)``), with the
    tokenizer files of ``model_dir`` copied verbatim. Collective; rank 0 writes. The files are written
    to a temporary directory first and then moved in."""
    model_state = full_model_state(model, ctx)
    if ctx.is_main:
        staging = out_dir / ".final.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        needed = sum(t.numel() for t in model_state.values()) * dtype.itemsize
        try:
            with naming_a_full_disk("the final model", out_dir, needed):
                save_model_files(model, model_state, staging, dtype)
            for name in TOKENIZER_FILES:
                if (model_dir / name).is_file():
                    shutil.copy2(model_dir / name, staging / name)
            _fsync_tree(staging)
            for old in [*out_dir.glob("*.safetensors"), out_dir / "model.safetensors.index.json"]:
                if old.is_file():
                    old.unlink()
            for path in sorted(staging.iterdir()):
                os.replace(path, out_dir / path.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    barrier(ctx)
