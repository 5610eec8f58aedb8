"""The training loop: :func:`train` turns a checkpoint directory into a trained checkpoint directory.

One code path for one process and for ``torchrun`` (FSDP2, see :mod:`sn29_growth.train.distributed`):
load the model (fp32 master weights), mark the new elements of a grown model, wrap, then for each step
take the next global batch of packed windows, run this rank's share as ``grad_accum`` micro-batches
(bf16 autocast on CUDA), clip, step :class:`~sn29_growth.train.optim.MaskedAdamW` at the scheduled
learning rates, log; validate on the held-out texts and checkpoint periodically. The loop itself
(:func:`_train`) reads as those stages: it drives a :class:`TrainingRun`, which holds the model, the
optimizer, the data stream and where the run stands. Options that change how a step runs but not what it
computes: activation checkpointing, ``torch.compile`` of the decoder layers, FSDP2 in one process, CPU
offload (see ``docs/memory-plan.md``). Outputs in ``OUT_DIR``:
the final model (config + safetensors + the tokenizer of ``MODEL_DIR``), ``train_log.jsonl``,
``loss_curve.png``, ``summary.json``, the model card ``README.md`` and ``checkpoints/``.

SIGINT (Ctrl-C) and SIGTERM pause a run rather than crash it: the step in progress finishes, every rank
agrees to stop at the same step, a checkpoint of that step is written (the usual atomic one) and
:class:`TrainingInterrupted` is raised, whose message is the one line to show (``interrupted at step N;
run the same command to resume``). A second signal (a second or more after the first) stops at once, as
it would have without the handler; the checkpoint being written is then simply not there, the earlier
ones are intact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from sn29_growth.atomic import atomic_write_json, atomic_write_text
from sn29_growth.checkpoint import checkpoint_dtype, read_model_config, try_read_config
from sn29_growth.eval.tokenizers import load_tokenizer
from sn29_growth.loading import load_model
from sn29_growth.progress import Progress
from sn29_growth.train.card import trained_model_card
from sn29_growth.train.checkpoint import (
    DTYPES,
    TrainerState,
    checkpoint_dir,
    latest_checkpoint,
    quiet_hf_progress,
    read_checkpoint,
    remove_partial_checkpoints,
    save_checkpoint,
    set_rng_state,
    write_final_model,
)
from sn29_growth.train.config import ScheduleConfig, TrainConfig
from sn29_growth.train.data import (
    CorpusTexts,
    DataPosition,
    TextSource,
    validation_windows,
    window_stream,
)
from sn29_growth.train.distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_object,
    decoder_layers,
    init_distributed,
    load_optimizer_state,
    local_shard,
    set_gradient_sync,
    shard_model,
    shutdown,
)
from sn29_growth.train.optim import MaskedAdamW, build_optimizer
from sn29_growth.train.plot import plot_losses
from sn29_growth.train.recipe import build_masks, read_new_slices
from sn29_growth.train.schedule import LearningRates, learning_rates

log = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "loss_curve.png"
CARD_FILE = "README.md"  # the model card; never hashed (chain/commitment.py)
STOP_GRACE_S = 1.0  # a second signal within this time of the first is the same request (see StopRequest)


@dataclass(frozen=True)
class TrainResult:
    out_dir: str
    complete: bool  # False when stopped early by ``stop_after`` (resume to finish)
    steps: int  # optimizer steps done, in total
    tokens: int  # predicted tokens trained on, all ranks together
    train_time_s: float  # time in training steps (validation and checkpoints excluded)
    tokens_per_s: float
    initial_val_loss: float | None
    final_val_loss: float | None
    final_train_loss: float | None
    resumed_from: int | None  # the checkpoint step this invocation resumed from
    world_size: int
    device: str
    compute_dtype: str
    parameters: int
    new_elements: int  # elements the growth recipe marks new (0 without a recipe)
    checkpoint: str | None  # the newest checkpoint directory, if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM paused the run at ``step``; ``checkpoint`` holds it (``None``: no step was done
    and no checkpoint existed). The message is the single line to show the user."""

    def __init__(self, step: int, checkpoint: str | None, resume: bool, signal_name: str = "SIGINT") -> None:
        how = "run the same command" if resume else "run the same command with --resume"
        super().__init__(f"interrupted at step {step}; {how} to resume")
        self.step = step
        self.checkpoint = checkpoint
        self.signal_name = signal_name


class StopRequest:
    """While active (a context manager), SIGINT and SIGTERM only ask the loop to stop.

    The first signal sets a flag that :meth:`requested` reads between steps (all-reduced, so that every
    rank of a torchrun job stops at the same step; torchrun passes the SIGINT or SIGTERM it receives on to
    its workers). A signal within ``grace_s`` of the first is taken for the same request (one sent to a
    whole process group and also passed on by a launcher arrives twice); a later one goes to the
    handler that was there before (Ctrl-C: ``KeyboardInterrupt``; SIGTERM: the process ends). Handlers
    are only installed in the main thread and are restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, grace_s: float | None = None) -> None:
        self.grace_s = STOP_GRACE_S if grace_s is None else grace_s
        self.signum: int | None = None
        self._at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                with contextlib.suppress(ValueError, OSError):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @staticmethod
    def _say(text: str) -> None:
        """A line on stderr from inside a signal handler: ``os.write``, because logging's buffered stream
        may be in the middle of a write of the main thread (a reentrant write raises)."""
        with contextlib.suppress(OSError):
            os.write(2, f"{time.strftime('%H:%M:%S')} {text}\n".encode())

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum, self._at = signum, now
            self._say(
                f"{name}: stopping after the current step with a checkpoint (send it again to stop at once, "
                "without one)"
            )
            return
        if now - self._at < self.grace_s:
            return
        previous = self._previous.get(signum)
        self.restore()
        self._say(f"{name} again: stopping now")
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            os.kill(os.getpid(), signum)  # the default action, now that the handler is restored

    def requested(self, ctx: DistContext) -> bool:
        """Whether any rank received a signal (collective under torchrun: every rank calls it each step)."""
        flag = self.signum is not None
        if ctx.distributed:
            box = torch.tensor([int(flag)], dtype=torch.int64, device=ctx.device)
            flag = bool(all_reduce_sum(box, ctx).item() > 0)
        return flag


# ----------------------------------------------------------------------------------------- the log


class TrainLog:
    """``train_log.jsonl``: one JSON object per line (``kind`` ``train`` or ``eval``); rank 0 writes."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def keep_until(self, step: int) -> None:
        """Drop records after ``step`` (work a resumed run will redo) and any torn last line."""
        if self.enabled:
            kept = [r for r in self.records() if r.get("step", 0) <= step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


# ------------------------------------------------------------------------------------ loss and steps


def lm_loss(model: torch.nn.Module, windows: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy (fp32) of windows ``[B, T + 1]``: inputs ``[:, :-1]``, targets ``[:, 1:]``."""
    logits = model(input_ids=windows[:, :-1], use_cache=False).logits
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction=reduction
    )


def _scalar(t: torch.Tensor) -> float:
    return float(t.full_tensor() if isinstance(t, DTensor) else t)


def train_step(
    model: torch.nn.Module,
    optimizer: MaskedAdamW,
    windows: torch.Tensor,
    micro_batch: int,
    grad_clip: float,
    ctx: DistContext,
    autocast: contextlib.AbstractContextManager,
) -> tuple[float, float]:
    """One optimizer step over this rank's ``windows``; returns (mean loss over all ranks, grad norm)."""
    chunks = windows.split(micro_batch)
    total = torch.zeros((), device=ctx.device)
    for i, chunk in enumerate(chunks):
        if len(chunks) > 1:
            set_gradient_sync(model, i == len(chunks) - 1)
        with autocast:
            loss = lm_loss(model, chunk.to(ctx.device))
        (loss / len(chunks)).backward()
        total += loss.detach()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    mean = all_reduce_sum(total / len(chunks), ctx) / ctx.world_size
    return float(mean), _scalar(norm)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    windows: torch.Tensor,
    batch_size: int,
    ctx: DistContext,
    autocast: contextlib.AbstractContextManager,
) -> float:
    """Mean next-token loss over ``windows`` (shared out by rank; every rank runs the same number of
    forward passes, padding with zero-weight windows, because FSDP's forward is collective)."""
    was_training = model.training
    model.eval()
    per_step = batch_size * ctx.world_size
    sums = torch.zeros(2, dtype=torch.float64, device=ctx.device)
    for start in range(0, windows.shape[0], per_step):
        chunk = windows[start : start + per_step][ctx.rank * batch_size : (ctx.rank + 1) * batch_size]
        weight = 1.0
        if chunk.shape[0] == 0:
            chunk, weight = windows[:1], 0.0
        with autocast:
            loss = lm_loss(model, chunk.to(ctx.device), reduction="sum")
        sums[0] += weight * loss.double()
        sums[1] += weight * chunk.shape[0] * (chunk.shape[1] - 1)
    all_reduce_sum(sums, ctx)
    model.train(was_training)
    return float(sums[0] / sums[1])


# --------------------------------------------------------------------------------------- set-up


def compute_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[config.dtype]


def autocast_for(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each decoder layer's activations in backward (non-reentrant: composes with FSDP2).

    transformers 5.24 renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``;
    the old name still works but warns."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def compile_enabled(config: TrainConfig, device: torch.device) -> bool:
    """``compile``: on / off as asked; ``auto`` is off until a GPU measurement shows it pays."""
    return config.compile == "on"


def compile_decoder_layers(model: torch.nn.Module) -> None:
    """``torch.compile`` each decoder layer in place (one graph per layer shape, reused by all layers);
    done before FSDP2 wraps the layers and inside activation checkpointing's recomputation."""
    for layer in decoder_layers(model):
        layer.compile()


def holds_run(out_dir: Path) -> bool:
    return any((out_dir / name).exists() for name in ("checkpoints", LOG_FILE, SUMMARY_FILE))


def run_settings(config: TrainConfig, world_size: int, data: TextSource) -> dict[str, Any]:
    """The settings stored in each checkpoint: those a resumed run must agree with for its data position
    to mean the same windows, and those of the learning-rate schedule (a change is warned about)."""
    b = config.batch
    global_batch = b.batch_size * b.grad_accum * world_size
    return {
        "seq_len": b.seq_len,
        "global_batch": global_batch,
        "seed": config.seed,
        "data": data.name,
        "data_tokens": data_tokens(config, global_batch, data),
        "steps": config.steps,
        "lr": config.optimizer.lr,
        "schedule": asdict(config.schedule),
    }


def data_tokens(config: TrainConfig, global_batch: int, data: TextSource) -> int | None:
    """The ids a run tokenizing its data while it trains reads (``None`` for other data): its window
    order depends on them, so a resumed run must ask for the same (the same ``--steps``)."""
    if not getattr(data, "streamed", False):
        return None
    from sn29_growth.train.stream import run_tokens

    return run_tokens(config.steps, global_batch, config.batch.seq_len)


def _schedule_rates(settings: dict[str, Any], step: int) -> LearningRates | None:
    """The learning rates of update ``step`` under stored settings (``None`` if they are incomplete)."""
    try:
        schedule = ScheduleConfig(**settings["schedule"])
        return learning_rates(step, int(settings["steps"]), float(settings["lr"]), schedule)
    except (KeyError, TypeError, ValueError):
        return None


def check_resume(saved: dict[str, Any], current: dict[str, Any], step: int | None = None) -> None:
    """Refuse a resume whose data would differ; warn, naming each change, when the learning-rate schedule
    differs from the one the checkpoint was made with, and give the learning-rate jump at ``step``."""
    for key in ("seq_len", "global_batch", "seed", "data", "data_tokens"):
        if key in saved and saved[key] != current.get(key):
            raise ValueError(
                f"resume: {key} is {current[key]!r} but the checkpoint was made with {saved[key]!r}"
            )
    changes = [
        f"{key} {saved[key]!r} -> {current[key]!r}"
        for key in ("steps", "lr")
        if key in saved and saved[key] != current[key]
    ]
    old_schedule, new_schedule = saved.get("schedule") or {}, current.get("schedule") or {}
    changes += [
        f"schedule.{key} {old_schedule[key]!r} -> {new_schedule.get(key)!r}"
        for key in old_schedule
        if old_schedule[key] != new_schedule.get(key)
    ]
    if not changes:
        return
    message = "resume with changed settings: " + ", ".join(changes) + "; the schedule changes"
    before = _schedule_rates({**current, **saved}, step) if step is not None else None
    after = _schedule_rates(current, step) if step is not None else None
    if before is not None and after is not None:
        message += (
            f"; learning rate of the first resumed step ({step + 1}): {before.old:.3g} -> {after.old:.3g}"
        )
        if (before.new, after.new) != (before.old, after.old):
            message += f" (new elements {before.new:.3g} -> {after.new:.3g})"
    log.warning("%s", message)


def check_data_tokenizer(data: TextSource, tokenizer, model_dir: Path) -> None:
    """Refuse token ids prepared by another tokenizer than the model's (its fingerprint differs)."""
    prepared = getattr(data, "tokenizer_fingerprint", None)
    if prepared is None:
        return
    from sn29_growth.eval.tokenize import tokenizer_fingerprint

    own = tokenizer_fingerprint(tokenizer)
    if own != prepared:
        raise ValueError(
            f"data: {data.name} was prepared with tokenizer {prepared}, but {model_dir} tokenizes as {own}; "
            f"prepare it again with `sn29 data ... --tokenizer {model_dir}`"
        )


def open_windows(data: TextSource, model_dir: Path, tokenizer, config: TrainConfig, settings: dict[str, Any]):
    """The run's windows: tokenized into a prepared folder while it trains (``data.open_windows``), read
    memory-mapped from a prepared folder, or packed per epoch."""
    seq_len = config.batch.seq_len
    if getattr(data, "streamed", False):
        return data.open_windows(model_dir, tokenizer, seq_len, config.seed, settings["data_tokens"])
    return window_stream(data, tokenizer, seq_len, config.seed)


def load_training_model(weights_dir: Path, config: TrainConfig) -> torch.nn.Module:
    """The weights to train, loaded on the CPU in ``config.param_dtype`` (the optimizer updates these):
    fp32 master weights by default."""
    with quiet_hf_progress():
        return load_model(
            weights_dir,
            dtype=DTYPES[config.param_dtype],
            device="cpu",
            attn_implementation=config.attn_implementation,
        )


def build_model_and_optimizer(
    weights_dir: Path, model_dir: Path, config: TrainConfig, ctx: DistContext
) -> tuple[torch.nn.Module, MaskedAdamW, int, int]:
    """Load the weights of ``weights_dir`` (:func:`load_training_model`), mark the new elements that
    ``model_dir``'s growth recipe declares, prepare (activation checkpointing, compile), wrap for this
    process group and build the optimizer.

    Returns (model, optimizer, parameter count, new element count)."""
    model = load_training_model(weights_dir, config)
    masks = build_masks(model, read_new_slices(model_dir))
    new_elements = int(sum(m.sum() for m in masks.values()))
    parameters = sum(p.numel() for p in model.parameters())
    if config.schedule.new_only_steps and not new_elements:
        raise ValueError(f"new_only_steps: {model_dir} has no growth_recipe.json with new slices")
    if config.schedule.new_lr_warmup and not new_elements:
        log.warning("new_lr_warmup: %s marks no new parameters; nothing to re-warm", model_dir)
    model.config.use_cache = False
    if config.grad_checkpointing:
        enable_activation_checkpointing(model)
    if compile_enabled(config, ctx.device):
        compile_decoder_layers(model)
    model.train()
    model = shard_model(model, ctx, cpu_offload=config.cpu_offload)
    optimizer = build_optimizer(model, config.optimizer, masks, shard=local_shard)
    return model, optimizer, parameters, new_elements


# ---------------------------------------------------------------------------------------- train


def train(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    data: TextSource | None = None,
    validation: TextSource | None = None,
) -> TrainResult:
    """Train the checkpoint in ``model_dir``; write the trained checkpoint and logs into ``out_dir``.

    ``data`` defaults to the embedded corpus's train part, ``validation`` to its held-out part. Under
    ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; rank 0 writes the files.
    """
    config = config or TrainConfig()
    ctx = init_distributed(config.device, fsdp=config.fsdp)
    try:
        return _train(Path(model_dir), Path(out_dir), config, data or CorpusTexts("train"), validation, ctx)
    finally:
        shutdown(ctx)


def _train(
    model_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    data: TextSource,
    validation: TextSource | None,
    ctx: DistContext,
) -> TrainResult:
    # rank 0 inspects OUT_DIR and every rank follows its reading (rank 0 starts writing there soon)
    done, resume_dir, occupied = broadcast_object(_inspect(out_dir, config), ctx)
    if done is not None:
        log.info("%s: already complete (%d steps)", out_dir, done.steps)
        return done
    if occupied:
        raise FileExistsError(
            f"{out_dir} already holds a training run; pass resume (--resume) or a new directory"
        )
    run = TrainingRun(model_dir, out_dir, config, data, validation, ctx, resume_dir)
    try:
        return _run(run, ctx)
    finally:
        run.close()


def _run(run: TrainingRun, ctx: DistContext) -> TrainResult:
    run.restore()
    with StopRequest() as stop:
        if run.validating and run.step == 0:
            run.evaluate()
        with run.progress_bar() as bar:
            while run.step < run.end:
                if stop.requested(ctx):  # every rank reads the same answer and stops at the same step
                    raise run.interrupted(stop.signal_name)
                run.train_one_step(bar)
                if run.evaluation_due():
                    run.evaluate()
                if run.checkpoint_due():
                    run.checkpoint()
        # a signal from here on (the last step is done) lets the run finish: the outputs are what is left
        run.finish()
        if stop.signum is not None:
            log.warning("%s came after the last step of this run: it finished normally", stop.signal_name)
    return run.result()


class TrainingRun:
    """One invocation of :func:`train`: the model, optimizer and data of the run and where it stands.

    Built from ``model_dir`` (or the checkpoint ``resume_dir`` to continue); the loop in :func:`_train`
    calls the stages: :meth:`restore`, :meth:`train_one_step`, :meth:`evaluate`, :meth:`checkpoint`,
    :meth:`finish`, :meth:`result`. Every rank of a torchrun job holds one and calls the same stages.
    """

    def __init__(
        self,
        model_dir: Path,
        out_dir: Path,
        config: TrainConfig,
        data: TextSource,
        validation: TextSource | None,
        ctx: DistContext,
        resume_dir: Path | None,
    ) -> None:
        self.model_dir, self.out_dir, self.config, self.ctx = model_dir, out_dir, config, ctx
        self.data, self.resume_dir = data, resume_dir
        self.settings = run_settings(config, ctx.world_size, data)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        tokenizer = load_tokenizer(model_dir)  # on the network's stack: trained on the ids it is scored on
        check_data_tokenizer(data, tokenizer, model_dir)
        # data tokenized while training starts first: its producer works while the model loads
        self.stream = open_windows(data, model_dir, tokenizer, config, self.settings)
        try:
            self.model, self.optimizer, self.parameters, self.new_elements = build_model_and_optimizer(
                resume_dir or model_dir, model_dir, config, ctx
            )
            self.dtype = compute_dtype(config, ctx.device)
            self.autocast = autocast_for(ctx.device, self.dtype)
            self.log = TrainLog(out_dir / LOG_FILE, ctx.is_main)
            self.val_windows = self._validation_windows(tokenizer, validation)
        except BaseException:
            self.close()
            raise
        # where the run stands
        self.step, self.tokens, self.train_time, self.position = 0, 0, 0.0, DataPosition()
        self.end = min(config.steps, config.stop_after) if config.stop_after else config.steps
        self.loss: float | None = None  # of this invocation's last step
        self.last_eval_step: int | None = None
        self.saved_step: int | None = None  # the step of the newest checkpoint on disk
        self.last_checkpoint: str | None = None  # written by this invocation
        self.complete = False
        self._start = (0, 0.0)  # (tokens, train time) when this invocation began

    def close(self) -> None:
        """Stop the data's producer, if the data has one (what it committed stays for the next run)."""
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()

    @property
    def validating(self) -> bool:
        return self.val_windows is not None

    def _validation_windows(self, tokenizer, validation: TextSource | None) -> torch.Tensor | None:
        if not self.config.eval_every:
            return None
        batch = self.config.batch
        windows = validation_windows(
            tokenizer, validation or CorpusTexts("held_out"), batch.seq_len, batch.eval_windows
        )
        if windows.shape[0] == 0:
            raise ValueError("validation: no complete window of seq_len tokens in the validation texts")
        return windows

    # -------------------------------------------------------------------------------------- stages

    def restore(self) -> None:
        """Continue from ``resume_dir`` (optimizer, RNG, counters, data position); clean ``OUT_DIR`` of what
        a killed run logged after its last checkpoint (everything, without a checkpoint)."""
        if self.resume_dir is not None:
            state, optim_state, rngs = read_checkpoint(self.resume_dir)
            check_resume(state.run, self.settings, state.step)
            load_optimizer_state(self.model, self.optimizer, optim_state)
            set_rng_state(rngs[self.ctx.rank] if len(rngs) == self.ctx.world_size else rngs[0])
            self.step, self.tokens = state.step, state.tokens
            self.train_time, self.position = state.train_time_s, state.position
            self.saved_step = state.step
            log.info("resuming from %s (step %d, %d tokens)", self.resume_dir, self.step, self.tokens)
        self._start = (self.tokens, self.train_time)
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.log.keep_until(self.step if self.resume_dir is not None else -1)
            remove_partial_checkpoints(self.out_dir)

    def progress_bar(self) -> Progress:
        return Progress(
            self.end,
            "train",
            unit="step",
            initial=self.step,
            bar=self.config.progress,
            enabled=self.ctx.is_main,
            logger=log,
        )

    def train_one_step(self, bar: Progress) -> None:
        """The next optimizer step: learning rates, this rank's share of the next global batch, log."""
        config, ctx = self.config, self.ctx
        rates = learning_rates(self.step, config.steps, config.optimizer.lr, config.schedule)
        self.optimizer.set_learning_rates(rates)
        windows, self.position = self.stream.take_share(
            self.position, self.settings["global_batch"], ctx.rank, ctx.world_size
        )
        started = time.perf_counter()
        loss, grad_norm = train_step(
            self.model,
            self.optimizer,
            windows,
            config.batch.batch_size,
            config.optimizer.grad_clip,
            ctx,
            self.autocast,
        )
        elapsed = time.perf_counter() - started
        if not math.isfinite(loss):
            raise RuntimeError(
                f"step {self.step + 1}: non-finite loss {loss}; lower --lr (checkpoints are untouched)"
            )
        self.step += 1
        self.tokens += self.settings["global_batch"] * config.batch.seq_len
        self.train_time += elapsed
        self.loss = loss
        self.log.append(
            {
                "kind": "train",
                "step": self.step,
                "tokens": self.tokens,
                "loss": loss,
                "lr": rates.old,
                "new_lr": rates.new,
                "grad_norm": grad_norm,
                "step_time_s": elapsed,
            }
        )
        tokens0, time0 = self._start
        rate = (self.tokens - tokens0) / (self.train_time - time0) if self.train_time > time0 else 0.0
        bar.update(1, loss=f"{loss:.4f}", tok_s=f"{rate:,.0f}", lr=f"{rates.old:.3g}")

    def evaluation_due(self) -> bool:
        every = self.config.eval_every
        return self.validating and (self.step % every == 0 or self.step == self.config.steps)

    def evaluate(self) -> float:
        loss = evaluate(self.model, self.val_windows, self.config.batch.batch_size, self.ctx, self.autocast)
        self.log.append({"kind": "eval", "step": self.step, "tokens": self.tokens, "val_loss": loss})
        if self.ctx.is_main:
            log.info("step %d: validation loss %.4f", self.step, loss)
        self.last_eval_step = self.step
        return loss

    def checkpoint_due(self) -> bool:
        every = self.config.checkpoint.save_every
        return bool(every and self.step % every == 0) or self.step == self.end < self.config.steps

    def checkpoint(self) -> str:
        state = TrainerState(
            self.step, self.tokens, self.position, self.train_time, self.ctx.world_size, self.settings
        )
        path = save_checkpoint(
            self.out_dir, self.model, self.optimizer, state, self.ctx, self.config.checkpoint.keep
        )
        self.saved_step, self.last_checkpoint = self.step, str(path)
        if self.ctx.is_main:
            title = f"{self.model_dir.name}: step {self.step}"
            plot_losses(self.log.records(), self.out_dir / PLOT_FILE, title=title)
        return str(path)

    def interrupted(self, signal_name: str) -> TrainingInterrupted:
        """Checkpoint the step reached (unless there is none or it is saved) and say how to resume."""
        if self.step > 0 and self.saved_step != self.step:
            self.checkpoint()
        path = str(checkpoint_dir(self.out_dir, self.step)) if self.saved_step == self.step else None
        return TrainingInterrupted(self.step, path, self.config.checkpoint.resume, signal_name)

    def finish(self) -> None:
        """After the last step of the whole run: the final validation and the final model."""
        self.complete = self.step >= self.config.steps
        if not self.complete:
            return
        if self.validating and self.last_eval_step != self.step:
            self.evaluate()
        save_dtype = self.config.save_dtype
        if save_dtype == "source":
            save_dtype = checkpoint_dtype(read_model_config(self.model_dir))
        write_final_model(self.out_dir, self.model, self.model_dir, self.ctx, DTYPES[save_dtype])

    def result(self) -> TrainResult:
        """The :class:`TrainResult`; rank 0 also writes the loss curve, ``summary.json`` and the model card."""
        records = self.log.records() if self.ctx.is_main else []
        evals = [r["val_loss"] for r in records if r.get("kind") == "eval"]
        trains = [r["loss"] for r in records if r.get("kind") == "train"]
        resume_dir = self.resume_dir
        result = TrainResult(
            out_dir=str(self.out_dir),
            complete=self.complete,
            steps=self.step,
            tokens=self.tokens,
            train_time_s=self.train_time,
            tokens_per_s=self.tokens / self.train_time if self.train_time > 0 else 0.0,
            initial_val_loss=evals[0] if evals else None,
            final_val_loss=evals[-1] if evals else None,
            final_train_loss=trains[-1] if trains else self.loss,
            resumed_from=None if resume_dir is None else int(resume_dir.name.split("-")[-1]),
            world_size=self.ctx.world_size,
            device=str(self.ctx.device),
            compute_dtype=str(self.dtype).removeprefix("torch."),
            parameters=self.parameters,
            new_elements=self.new_elements,
            checkpoint=self.last_checkpoint or (str(resume_dir) if resume_dir else None),
        )
        if self.ctx.is_main:
            title = f"{self.model_dir.name} → {self.out_dir.name}"
            plot_losses(records, self.out_dir / PLOT_FILE, title=title)
            summary = {
                **result.to_dict(),
                "model_dir": str(self.model_dir),
                "data": self.data.name,
                "config": self.config.to_dict(),
            }
            atomic_write_json(self.out_dir / SUMMARY_FILE, summary)
            if result.complete:
                self._write_card(result)
        return result

    def _write_card(self, result: TrainResult) -> None:
        config, _ = try_read_config(self.out_dir)
        arch = (config or {}).get("architectures")
        card = trained_model_card(
            result,
            self.model_dir,
            arch[0] if isinstance(arch, list) and arch and isinstance(arch[0], str) else None,
            self.data.name,
            self.config.to_dict(),
        )
        atomic_write_text(self.out_dir / CARD_FILE, card)


def _inspect(out_dir: Path, config: TrainConfig) -> tuple[TrainResult | None, Path | None, bool]:
    """(the result of a finished identical run, the checkpoint to resume from, refuse to start)."""
    if not config.checkpoint.resume:
        return None, None, holds_run(out_dir)
    return _completed(out_dir, config), latest_checkpoint(out_dir), False


def _completed(out_dir: Path, config: TrainConfig) -> TrainResult | None:
    path = out_dir / SUMMARY_FILE
    if not path.is_file():
        return None
    with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
        result = TrainResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
        if result.complete and result.steps == config.steps:
            return result
    return None
