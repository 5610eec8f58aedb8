"""Run a study: per seed, train the base model, then prepare and train every arm on equal terms.

Layout under ``OUT``::

    runs/seed-S/base-init, runs/seed-S/base       the base model before / after its training
    runs/seed-S/ARM/start                          the arm's starting checkpoint (grown or scratch)
    runs/seed-S/ARM/train                          train_log.jsonl, summary.json (weights unless dropped)
    runs/seed-S/ARM/arm.json                       the arm's record (a rerun reuses finished arms)

Equal terms: every arm trains ``train.steps`` steps of ``batch_size × seq_len`` tokens with the same
optimizer and schedule, shuffling the training windows with ``seed + data_seed_offset`` (so each arm of a
seed sees the same windows in the same order, and not the base phase's order again), and is validated on
the same held-out windows. The loss right after growth is the step-0 validation of the arm's run.

With ``tokens`` (a token corpus folder, :mod:`sn29_growth.study.token_data`) the reading is single-epoch:
the base reads the first tokens of the train split, every arm the same next ones, a ``reads: all``
scratch arm both; the models take the corpus's vocabulary and tokenizer. An arm's own knobs
(``param_dtype``, ``warmup_steps``, ``new_lr_warmup``, ``new_only_steps``) override the shared ``train``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sn29_growth.atomic import atomic_write_json
from sn29_growth.study.arms import Vocabulary, build_base, prepare_arm
from sn29_growth.study.config import ArmConfig, PhaseConfig, StudyConfig
from sn29_growth.train import (
    BatchConfig,
    CheckpointConfig,
    CorpusTexts,
    FileTexts,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainResult,
    train,
)
from sn29_growth.train.data import TextSource, pack, source_from_arg, token_stream

log = logging.getLogger(__name__)

ARM_FILE = "arm.json"
BASE_FILE = "base.json"


@dataclass(frozen=True)
class DataInfo:
    """The training text as the study sees it: windows per epoch (one epoch = one pass over it)."""

    name: str
    tokens: int
    windows_per_epoch: int
    seq_len: int

    @property
    def tokens_per_epoch(self) -> int:
        return self.windows_per_epoch * self.seq_len

    def epochs(self, tokens: int) -> float:
        return tokens / self.tokens_per_epoch

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tokens": self.tokens,
            "windows_per_epoch": self.windows_per_epoch,
            "tokens_per_epoch": self.tokens_per_epoch,
            "seq_len": self.seq_len,
        }


@dataclass(frozen=True)
class StudyData:
    """What each phase reads: the base's and the arms' training sources, the validation source, the
    models' vocabulary and the description of the training data."""

    base: TextSource
    arms: TextSource
    validation: TextSource
    vocab: Vocabulary
    info: DataInfo
    all: TextSource | None = None  # base + arm tokens, for a scratch arm with ``reads: all``


def train_source(config: StudyConfig) -> TextSource:
    return source_from_arg(config.data)


def validation_source(config: StudyConfig) -> TextSource:
    if config.validation is None:
        return CorpusTexts("held_out")
    path = Path(config.validation)
    if not path.is_file():
        raise FileNotFoundError(f"validation: {path} does not exist")
    return FileTexts(path)


def data_info(source: TextSource, seq_len: int) -> DataInfo:
    from sn29_growth.tokenizer import embedded_tokenizer

    stream = token_stream(embedded_tokenizer(), source.texts(0))
    return DataInfo(source.name, int(stream.numel()), int(pack(stream, seq_len).shape[0]), seq_len)


def token_study_data(config: StudyConfig, out: Path) -> StudyData:
    """Single-epoch slices of the token corpus ``config.tokens``: the base reads the first tokens of its
    train split, every arm the same next ones, validation the held-out split. ``tokens: embedded`` is the
    embedded corpus, written as a token corpus under ``out``."""
    from sn29_growth.study.token_data import (
        EMBEDDED,
        corpus_tokenizer,
        model_overrides,
        study_slices,
        write_embedded_token_corpus,
    )
    from sn29_growth.train.tokens import open_token_corpus

    if config.tokens == EMBEDDED:
        corpus = write_embedded_token_corpus(out / "embedded-tokens")
    else:
        corpus = open_token_corpus(config.tokens)
    seq_len = config.train.seq_len
    slices = study_slices(
        corpus.folder,
        base_steps=config.base.steps,
        arm_steps=config.train.steps,
        global_batch=config.train.batch_size,
        seq_len=seq_len,
    )
    vocab = Vocabulary(tuple(model_overrides(corpus).items()), corpus_tokenizer(corpus))
    train_tokens = corpus.splits["train"].tokens
    info = DataInfo(f"tokens:{corpus.folder}", train_tokens, (train_tokens - 1) // seq_len, seq_len)
    return StudyData(slices.base, slices.arms, slices.validation, vocab, info, slices.all)


def study_data(config: StudyConfig, out: Path) -> StudyData:
    """The study's data: a token corpus (single-epoch slices) or texts (every phase reads them all)."""
    if config.tokens is not None:
        return token_study_data(config, out)
    data, val = train_source(config), validation_source(config)
    return StudyData(data, data, val, Vocabulary(), data_info(data, config.train.seq_len))


def train_config(
    phase: PhaseConfig,
    study: StudyConfig,
    *,
    steps: int,
    lr: float,
    seed: int,
    arm: ArmConfig | None = None,
) -> TrainConfig:
    """The :class:`TrainConfig` of one run (the base phase: its own steps and lr, the rest shared; an
    arm's own knobs override the shared warm-ups, and set new-only steps and the weights' dtype)."""
    warmup = phase.warmup_steps if arm is None or arm.warmup_steps is None else arm.warmup_steps
    new_warmup = phase.new_lr_warmup if arm is None or arm.new_lr_warmup is None else arm.new_lr_warmup
    return TrainConfig(
        steps=steps,
        eval_every=phase.eval_every,
        optimizer=OptimizerConfig(
            lr=lr, weight_decay=phase.weight_decay, beta2=phase.beta2, grad_clip=phase.grad_clip
        ),
        schedule=ScheduleConfig(
            kind=phase.schedule,
            warmup_steps=min(warmup, steps),
            min_lr_ratio=phase.min_lr_ratio,
            new_lr_warmup=new_warmup,
            new_only_steps=arm.new_only_steps if arm is not None else 0,
        ),
        batch=BatchConfig(
            batch_size=phase.batch_size, seq_len=phase.seq_len, eval_windows=phase.eval_windows
        ),
        checkpoint=CheckpointConfig(save_every=0, resume=True),
        device=study.device,
        dtype=study.dtype,
        param_dtype=arm.param_dtype if arm is not None else "float32",
        seed=seed,
        progress=False,
    )


def eval_curve(run_dir: Path) -> list[dict[str, float]]:
    """The validation records of a run: ``[{step, tokens, val_loss}]``."""
    out = []
    for line in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r.get("kind") == "eval":
            out.append({"step": r["step"], "tokens": r["tokens"], "val_loss": r["val_loss"]})
    return out


def drop_weights(run_dir: Path) -> None:
    for f in run_dir.glob("*.safetensors*"):
        f.unlink()


def flops(parameters: int, tokens: int) -> float:
    """Training compute, 6·N·D (attention's sequence term left out: the same for every arm)."""
    return 6.0 * parameters * tokens


def run_base(
    config: StudyConfig,
    seed: int,
    seed_dir: Path,
    data: TextSource,
    val: TextSource,
    vocab: Vocabulary | None = None,
) -> dict:
    """Build and train the base model of ``seed``; returns its record (reused when already written)."""
    record_path = seed_dir / BASE_FILE
    if record_path.is_file():
        return json.loads(record_path.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    init_dir = build_base(config.base, seed, seed_dir / "base-init", vocab)
    tc = train_config(config.train, config, steps=config.base.steps, lr=config.base.lr, seed=seed)
    result = train(init_dir, seed_dir / "base", tc, data=data, validation=val)
    record = {
        "seed": seed,
        "model_dir": str(seed_dir / "base"),
        "parameters": result.parameters,
        "steps": result.steps,
        "tokens": result.tokens,
        "initial_loss": result.initial_val_loss,
        "loss": result.final_val_loss,
        "train_time_s": result.train_time_s,
        "wall_s": time.perf_counter() - t0,
        "flops": flops(result.parameters, result.tokens),
        "curve": eval_curve(seed_dir / "base"),
    }
    atomic_write_json(record_path, record)
    return record


def run_arm(
    config: StudyConfig,
    arm: ArmConfig,
    seed: int,
    base: dict,
    seed_dir: Path,
    data: TextSource,
    val: TextSource,
    info: DataInfo,
    vocab: Vocabulary | None = None,
) -> dict:
    """Prepare and train one arm of one seed; returns its record (reused when already written)."""
    arm_dir = seed_dir / arm.name
    record_path = arm_dir / ARM_FILE
    if record_path.is_file():
        return json.loads(record_path.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    prepared = prepare_arm(
        arm, Path(base["model_dir"]), config.base, config.target, seed, arm_dir / "start", vocab
    )
    steps = config.train.steps + (config.base.steps if arm.reads == "all" else 0)
    tc = train_config(
        config.train,
        config,
        steps=steps,
        lr=config.train.lr,
        seed=seed + config.data_seed_offset,
        arm=arm,
    )
    result: TrainResult = train(prepared.model_dir, arm_dir / "train", tc, data=data, validation=val)
    wall = time.perf_counter() - t0
    curve = eval_curve(arm_dir / "train")
    start = result.initial_val_loss
    base_tokens = base["tokens"] if arm.kind != "scratch" else 0
    base_flops = base["flops"] if arm.kind != "scratch" else 0.0
    record = {
        "arm": arm.name,
        "label": arm.label(),
        "kind": arm.kind,
        "seed": seed,
        "hidden_method": arm.hidden_method if arm.grown else None,
        "init": arm.init if arm.grown else None,
        "noise": arm.noise if arm.grown else None,
        "depth": arm.depth if arm.grown else None,
        "preserving": arm.preserving,
        "param_dtype": arm.param_dtype,
        "warmup_steps": tc.schedule.warmup_steps,
        "new_lr_warmup": tc.schedule.new_lr_warmup,
        "new_only_steps": arm.new_only_steps,
        "reads": arm.reads,
        "parameters": result.parameters,
        "new_elements": result.new_elements,
        "copied_blocks": [list(p) for p in prepared.copied_blocks],
        "base_loss": base["loss"],
        "loss_after_growth": start,
        "delta_after_growth": None if start is None else start - base["loss"],
        "starts_at_base": None if start is None else abs(start - base["loss"]) <= config.preserve_tolerance,
        "final_loss": result.final_val_loss,
        "final_train_loss": result.final_train_loss,
        "steps": result.steps,
        "tokens": result.tokens,
        "epochs": info.epochs(result.tokens),
        "epochs_total": info.epochs(result.tokens + base_tokens),
        "train_time_s": result.train_time_s,
        "prepare_s": prepared.seconds,
        "wall_s": wall,
        "flops": flops(result.parameters, result.tokens),
        "flops_total": flops(result.parameters, result.tokens) + base_flops,
        "device": result.device,
        "compute_dtype": result.compute_dtype,
        "curve": curve,
    }
    if not config.keep_models:
        drop_weights(arm_dir / "train")
        if arm.kind != "continue":
            drop_weights(arm_dir / "start")
    atomic_write_json(record_path, record)
    log.info(
        "seed %d %-16s start %.4f (base %.4f) final %.4f  %d params  %.1fs",
        seed,
        arm.name,
        start if start is not None else float("nan"),
        base["loss"],
        result.final_val_loss if result.final_val_loss is not None else float("nan"),
        result.parameters,
        wall,
    )
    return record


@dataclass(frozen=True)
class StudyRun:
    config: StudyConfig
    data: DataInfo
    bases: list[dict]
    arms: list[dict]
    wall_s: float


def run_study(config: StudyConfig, out_dir: str | Path) -> StudyRun:
    """Run every seed × arm of ``config`` under ``out_dir``/runs (finished arms are reused)."""
    out = Path(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    data = study_data(config, out)
    info = data.info
    t0 = time.perf_counter()
    bases, arms = [], []
    for seed in config.seeds:
        seed_dir = out / "runs" / f"seed-{seed}"
        base = run_base(config, seed, seed_dir, data.base, data.validation, data.vocab)
        log.info("seed %d base: held-out loss %.4f after %d tokens", seed, base["loss"], base["tokens"])
        bases.append(base)
        for arm in config.arms:
            source = data.all if arm.reads == "all" else data.arms
            arms.append(run_arm(config, arm, seed, base, seed_dir, source, data.validation, info, data.vocab))
        if not config.keep_models:
            drop_weights(seed_dir / "base-init")
    return StudyRun(config, info, bases, arms, time.perf_counter() - t0)
