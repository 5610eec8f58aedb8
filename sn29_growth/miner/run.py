"""One miner run: find the base → grow within the limits → train → would it win? → upload and commit.

:func:`run_miner` takes a :class:`~sn29_growth.miner.config.MinerConfig` and injected clients
(:class:`MinerClients`: chain, Hub, competitions, and the evaluation and training functions), so the
same code runs against the real chain and Hub, the offline stand-ins (a local Hub directory and a chain
in a file) and test fakes.

Everything a run produces lives in ``work_dir/runs/<id>/`` where ``<id>`` is derived from the base
model's content, the growth request and the training settings: ``grown/`` (the verified growth),
``trained/`` (the training run; resumed from its last checkpoint after an interruption), ``upload/``
(exactly the files that are evaluated, hashed and uploaded), ``publish.json``
(the upload/commit phases done) and ``report.json``. Rerunning the same command resumes where it
stopped; completed steps are not redone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sn29_growth.atomic import atomic_write_json, atomic_write_text
from sn29_growth.chain.commitment import directory_hash, hashed_files
from sn29_growth.chain.protocol import ChainClient
from sn29_growth.eval.competitions import Competition, ProvidesCompetitions
from sn29_growth.eval.tokenizers import check_on_network
from sn29_growth.hub.protocol import HubClient
from sn29_growth.hub.store import DiskBudget, ModelStore
from sn29_growth.miner.base import BaseModel, find_base
from sn29_growth.miner.config import MinerConfig
from sn29_growth.miner.grow import Growth, grow_base
from sn29_growth.miner.publish import Published, publish
from sn29_growth.miner.wins import Opponent, Verdict, would_win
from sn29_growth.train.config import TrainConfig
from sn29_growth.train.loop import TrainingInterrupted

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
PUBLISH_STATE = "publish.json"
# how long torchrun lets its workers write the checkpoint of an interruption before it kills them
# (torchrun's own default is 30 s; a checkpoint with the optimizer state of a large model takes longer)
TORCHRUN_SHUTDOWN_S = 900


@dataclass
class MinerClients:
    """What a miner run talks to; every field is a small protocol so that tests can inject fakes.

    ``hotkey`` is the ss58 address that signs the chain commitment (the content hash is salted with it).
    ``store`` defaults to a :class:`ModelStore` over ``hub`` in ``work_dir/hub``. ``evaluate`` defaults to
    the validator's :func:`~sn29_growth.eval.evaluate.evaluate_models`, ``train`` to
    :func:`sn29_growth.train.train`.
    """

    chain: ChainClient
    hub: HubClient
    hotkey: str
    competitions: ProvidesCompetitions
    store: ModelStore | None = None
    evaluate: Callable[..., Any] | None = None
    train: Callable[..., Any] | None = None


@dataclass
class MinerReport:
    """What one run did.

    ``status``: ``published``; ``not-winning`` (not uploaded); ``dry-run`` (upload ``never``); ``stopped``
    (training stopped early by ``stop_after``; rerun to resume); ``not-network-compatible`` (the files
    would not load or score alike on the network's validators: never uploaded); ``failed`` (only in a
    ``report.json`` left by a run that raised); ``interrupted`` (likewise: SIGINT/SIGTERM paused the
    training with a checkpoint; ``training["interrupted_at_step"]``; rerun to resume).
    ``training["resumed_from_step"]`` is the checkpoint step the training continued from (``None``: it
    started afresh).
    """

    status: str
    competition: str
    run_dir: str
    base: dict[str, Any] = field(default_factory=dict)
    growth: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format(self) -> str:
        g, t, v = self.growth, self.training, self.verdict
        lines = [f"miner run {Path(self.run_dir).name} · {self.competition} · {self.status}"]
        if self.base:
            lines.append(f"  base      {self.base.get('label')}  ({self.base.get('path')})")
        if g:
            lines.append(
                f"  growth    {g.get('option')}: {g.get('parameters_before', 0):,} -> "
                f"{g.get('parameters_after', 0):,} parameters; held-out loss {_f(g.get('loss_before'))} -> "
                f"{_f(g.get('loss_after'))}"
            )
        if t.get("interrupted_at_step") is not None:
            lines.append(
                f"  training  interrupted at step {t['interrupted_at_step']}"
                + (f"; checkpoint {t['checkpoint']}" if t.get("checkpoint") else "")
            )
        elif t:
            resumed = t.get("resumed_from_step")
            lines.append(
                f"  training  {t.get('steps')} steps, {t.get('tokens', 0):,} tokens, "
                f"{t.get('tokens_per_s', 0):,.0f} tokens/s; held-out loss {_f(t.get('initial_val_loss'))} -> "
                f"{_f(t.get('final_val_loss'))}"
                + (f"; resumed from step {resumed}" if resumed is not None else "")
            )
        if v:
            means = ", ".join(
                f"{k} {'-' if val is None else format(val, '.4f')}"
                for k, val in v.get("mean_losses", {}).items()
            )
            lines.append(f"  verdict   {'wins' if v.get('wins') else 'does not win'}: {v.get('reason')}")
            if means:
                lines.append(f"            mean summed loss per sample ({v.get('dataset')}): {means}")
        for finding in self.network.get("findings", []):
            lines.append(f"  network   {finding['severity']}: {finding['file']}: {finding['message']}")
        if self.published:
            lines.append(f"  published {self.published.get('commitment')}")
        if self.message:
            lines.append(f"  note      {self.message}")
        return "\n".join(lines)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


# ------------------------------------------------------------------------------------------- pieces


def run_id(base: BaseModel, config: MinerConfig, competition: Competition) -> str:
    """A short id of (base content, limits, growth request, training settings): same inputs, same run
    directory. The competition's limits are part of it: a changed limit plans (and grows) anew."""
    grow = config.grow
    if grow not in ("auto", "none"):
        grow = hashlib.sha256(Path(grow).read_bytes()).hexdigest()
    # A committed base was hash-checked already: its commitment's hash names its content.
    content = base.committed.model.hash if base.committed else directory_hash(hashed_files(base.path))
    doc = {
        "base": content,
        "competition": config.competition,
        "limits": {"parameters": competition.parameters, "model_size": competition.model_size},
        "grow": grow,
        "grow_seed": config.grow_seed,
        "train": _train_fingerprint(config.train),
        "train_data": config.train_data,
        "train_procs": config.train_procs,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def _train_fingerprint(train: TrainConfig | None) -> dict[str, Any] | None:
    if train is None:
        return None
    d = train.to_dict()
    d.pop("progress", None)
    d.pop("stop_after", None)
    d["checkpoint"] = {k: v for k, v in d["checkpoint"].items() if k == "save_every"}
    return d


def text_source(config: MinerConfig):
    """The training data: the embedded corpus's train part, a Hub dataset or a folder of text files
    (tokenized while training into ``config.data_dir``), FineWeb-edu samples (rows API), a prepared folder
    or a file."""
    from sn29_growth.train.data import SampledTexts, source_from_arg

    if config.train_data in ("fineweb", "fineweb2", "fineweb-edu"):
        from sn29_growth.eval.data import make_source

        source = make_source("fineweb", cache_dir=config.work_dir / "datasets")
        return SampledTexts(source, config.train_samples, seed=config.seed)
    return source_from_arg(config.train_data, data_dir=config.data_dir)


def train_args(config: TrainConfig) -> list[str]:
    """``sn29 train`` flags equal to ``config`` (for the torchrun launch)."""
    o, s, b, c = config.optimizer, config.schedule, config.batch, config.checkpoint
    flags = {
        "--steps": config.steps,
        "--lr": o.lr,
        "--weight-decay": o.weight_decay,
        "--grad-clip": o.grad_clip,
        "--schedule": s.kind,
        "--warmup": s.warmup_steps,
        "--min-lr-ratio": s.min_lr_ratio,
        "--new-lr-warmup": s.new_lr_warmup,
        "--new-only-steps": s.new_only_steps,
        "--batch-size": b.batch_size,
        "--seq-len": b.seq_len,
        "--grad-accum": b.grad_accum,
        "--eval-every": config.eval_every,
        "--eval-windows": b.eval_windows,
        "--save-every": c.save_every,
        "--keep-checkpoints": c.keep,
        "--dtype": config.dtype,
        "--save-dtype": config.save_dtype,
        "--compile": config.compile,
        "--device": config.device,
        "--seed": config.seed,
    }
    args = [part for flag, value in flags.items() for part in (flag, str(value))]
    args += ["--resume", "--no-progress", "--json"]
    if config.stop_after:
        args += ["--stop-after", str(config.stop_after)]
    switches = {
        "--grad-checkpointing": config.grad_checkpointing,
        "--fsdp": config.fsdp,
        "--cpu-offload": config.cpu_offload,
    }
    args += [flag for flag, on in switches.items() if on]
    return args


def train_candidate(model_dir: Path, out_dir: Path, config: MinerConfig, train_fn: Callable[..., Any] | None):
    """Train ``model_dir`` into ``out_dir`` (resuming a run found there); returns the TrainResult."""
    assert config.train is not None
    tc = dataclasses.replace(
        config.train, checkpoint=dataclasses.replace(config.train.checkpoint, resume=True)
    )
    if config.train_procs > 1:
        if config.train_data in ("fineweb", "fineweb2", "fineweb-edu"):
            raise ValueError("--train-procs > 1 trains on 'local' or a file; fineweb needs one process")
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={config.train_procs}",
            "-m",
            "sn29_growth.train",
            str(model_dir),
            str(out_dir),
            "--data",
            config.train_data,
            "--data-dir",
            str(config.data_dir),
            *train_args(tc),
        ]
        log.info("training under torchrun: %s", " ".join(cmd))
        run_training_processes(cmd, out_dir)
        from sn29_growth.train.loop import SUMMARY_FILE, TrainResult

        return TrainResult.from_dict(json.loads((out_dir / SUMMARY_FILE).read_text(encoding="utf-8")))
    if train_fn is None:
        from sn29_growth.train import train as train_fn
    return train_fn(model_dir, out_dir, tc, data=text_source(config))


def run_training_processes(cmd: list[str], out_dir: Path) -> None:
    """Run the torchrun command ``cmd``. Ctrl-C reaches torchrun too (the same process group), and SIGTERM
    is passed on to it; torchrun passes either on to its workers, which write a checkpoint and stop
    (``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` gives them the time). Then raise :class:`TrainingInterrupted`. A
    second Ctrl-C kills torchrun."""
    from sn29_growth.train.checkpoint import latest_checkpoint

    env = dict(os.environ)
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(TORCHRUN_SHUTDOWN_S))
    proc = subprocess.Popen(cmd, env=env)
    received: list[str] = []

    def forward(signum, frame) -> None:
        received.append(signal.Signals(signum).name)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: no handler
        previous = signal.signal(signal.SIGTERM, forward)
    try:
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            received.append("SIGINT")
            log.warning("waiting for the training processes to write a checkpoint (Ctrl-C again: kill them)")
            try:
                rc = proc.wait()
            except KeyboardInterrupt:
                proc.kill()
                proc.wait()
                raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if received and rc != 0:
        latest = latest_checkpoint(out_dir)
        step = int(latest.name.split("-")[-1]) if latest is not None else 0
        raise TrainingInterrupted(step, str(latest) if latest else None, True, received[0]) from None
    if rc != 0:
        raise subprocess.CalledProcessError(rc, cmd)


def model_card(report: MinerReport, competition: Competition) -> str:
    """The README uploaded beside the model (not part of the content hash)."""
    g, t = report.growth, report.training
    lines = [
        "---",
        "library_name: transformers",
        "tags: [sn29, bittensor, grown-model]",
        "---",
        "",
        f"# SN29 {competition.name} submission",
        "",
        f"Grown from `{report.base.get('label')}` and trained with the sn29-growth miner.",
        "",
        "| | value |",
        "|---|---|",
    ]
    if g:
        lines.append(f"| parameters | {g.get('parameters_before', 0):,} → {g.get('parameters_after', 0):,} |")
        lines.append(f"| growth | {g.get('option')} |")
    if t:
        lines.append(f"| training | {t.get('steps')} steps, {t.get('tokens', 0):,} tokens |")
        lines.append(f"| held-out loss | {_f(t.get('initial_val_loss'))} → {_f(t.get('final_val_loss'))} |")
    return "\n".join([*lines, ""])


def _opponents(base: BaseModel, chain_best: BaseModel | None, block: int) -> list[Opponent]:
    """The chain's current best (with its commitment block); without one, the base as if committed now."""
    if chain_best is not None:
        return [Opponent("current-best", chain_best.path, chain_best.block or 0, uid=0)]
    return [Opponent("base", base.path, block, uid=0)]


# ------------------------------------------------------------------------------------------- the run


def run_miner(config: MinerConfig, clients: MinerClients) -> MinerReport:
    """Find the base, grow it within the limits, train it, check it would win, upload and commit.

    Raises for problems that stop the run (no base, a growth that changes the loss, a limit exceeded, a
    Hub or chain failure after retries), after recording the error in the run's ``report.json``;
    running again resumes from the completed steps.
    """
    t0 = time.monotonic()
    competitions = clients.competitions.get()
    if config.competition not in competitions:
        raise ValueError(
            f"competition {config.competition!r} is not in competitions.json ({', '.join(competitions)})"
        )
    comp = competitions[config.competition]
    store = clients.store or ModelStore(clients.hub, config.hub_cache, DiskBudget())

    base = find_base(config.base, comp, clients.chain, store)
    chain_best = base if config.base is None else _chain_best(clients.chain, comp, store)
    run_dir = config.runs_dir / run_id(base, config, comp)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = MinerReport("failed", comp.name, str(run_dir), base=base.to_dict())
    seconds = {"base": time.monotonic() - t0}
    log.info("miner run %s: base %s", run_dir, base.label)
    try:
        _run(config, clients, comp, base, chain_best, run_dir, report, seconds)
    except Exception as e:
        if isinstance(e, TrainingInterrupted):  # a pause: rerunning resumes from its checkpoint
            report.status, report.message = "interrupted", str(e)
        else:
            report.status, report.message = "failed", f"{type(e).__name__}: {e}"
        _save(run_dir, report, seconds)
        raise
    seconds["total"] = time.monotonic() - t0
    _save(run_dir, report, seconds)
    return report


def _chain_best(chain: ChainClient, comp: Competition, store: ModelStore) -> BaseModel | None:
    from sn29_growth.miner.base import BaseNotFound, best_on_chain

    try:
        return best_on_chain(chain, comp, store)[0]
    except BaseNotFound as e:
        log.info("nothing to compare against on chain: %s", e)
        return None


def _run(
    config: MinerConfig,
    clients: MinerClients,
    comp: Competition,
    base: BaseModel,
    chain_best: BaseModel | None,
    run_dir: Path,
    report: MinerReport,
    seconds: dict[str, float],
) -> None:
    t = time.monotonic()
    growth: Growth = grow_base(base.path, run_dir / "grown", comp, config.grow, seed=config.grow_seed)
    report.growth = growth.to_dict()
    seconds["growth"] = time.monotonic() - t
    _save(run_dir, report, seconds)

    candidate = growth.path
    if config.train is not None:
        t = time.monotonic()
        try:
            result = train_candidate(growth.path, run_dir / "trained", config, clients.train)
        except TrainingInterrupted as e:
            report.training = {"interrupted_at_step": e.step, "checkpoint": e.checkpoint}
            seconds["training"] = time.monotonic() - t
            raise
        report.training = {**result.to_dict(), "resumed_from_step": result.resumed_from}
        seconds["training"] = time.monotonic() - t
        if not result.complete:
            report.status, report.message = "stopped", "training stopped early (stop_after); rerun to resume"
            return
        candidate = run_dir / "trained"
    _save(run_dir, report, seconds)

    t = time.monotonic()
    upload_dir = stage_upload(candidate, run_dir / "upload")
    network = check_on_network(upload_dir)  # the static rules and the tokenizer run on the network's stack
    report.network = network.to_dict()
    for finding in network.findings:
        log.warning("network check of %s: %s", upload_dir, finding.format())
    block = clients.chain.current_block()
    verdict: Verdict = would_win(
        upload_dir,
        _opponents(base, chain_best, block),
        comp,
        current_block=block,
        dataset=config.dataset,
        samples=config.samples,
        seed=config.seed,
        device=config.device,
        cache_dir=config.eval_cache,
        min_win_rate=config.min_win_rate,
        evaluate=clients.evaluate,
    )
    report.verdict = verdict.to_dict()
    seconds["evaluation"] = time.monotonic() - t
    log.info("evaluation:\n%s", verdict.table)

    if config.upload == "never" or (not verdict.wins and config.upload != "always"):
        report.status = "dry-run" if config.upload == "never" else "not-winning"
        report.message = "not uploaded" + ("" if verdict.wins else f": {verdict.reason}")
        return
    if not network.ok:  # even --force-upload: a model the network cannot load or scores otherwise
        report.status = "not-network-compatible"
        report.message = "not uploaded: " + "; ".join(f.format() for f in network.errors)
        return

    t = time.monotonic()
    atomic_write_text(upload_dir / "README.md", model_card(report, comp))
    published: Published = publish(
        upload_dir,
        repo_id=config.hf_repo,
        competition=comp.name,
        hotkey=clients.hotkey,
        hub=clients.hub,
        chain=clients.chain,
        state_path=run_dir / PUBLISH_STATE,
    )
    report.published = published.to_dict()
    report.status = "published"
    seconds["publish"] = time.monotonic() - t


def stage_upload(model_dir: Path, target: Path) -> Path:
    """``target``: exactly the files an upload sends (hard links where possible), so that the model is
    evaluated, hashed and uploaded as validators will download it (no checkpoints or logs beside it)."""
    from sn29_growth.atomic import atomic_directory
    from sn29_growth.hub.policy import upload_paths

    with atomic_directory(target, overwrite=True) as tmp:
        for name in upload_paths(model_dir):
            try:
                os.link(model_dir / name, tmp / name)
            except OSError:
                shutil.copy2(model_dir / name, tmp / name)
    return target


def _save(run_dir: Path, report: MinerReport, seconds: dict[str, float]) -> None:
    report.seconds = {k: round(v, 3) for k, v in seconds.items()}
    atomic_write_json(run_dir / REPORT_FILE, report.to_dict())
