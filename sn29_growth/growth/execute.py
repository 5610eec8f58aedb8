"""Streaming growth of a checkpoint directory: ``grow_checkpoint(src, dst, spec)``.

One source shard is open at a time and tensors are read one by one; every output tensor is grown in
fp32, cast once, and streamed into size-capped output shards whose headers are planned up front. Peak
memory is a few copies of the largest tensor plus a constant, whatever the model size. The result is
written into a temporary directory beside ``dst`` and renamed at the end: on any failure (including a
failed ``verify``) nothing is left behind.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sn29_growth.arch import IGNORED_TENSORS, UnsupportedArchitecture, compare_tensors
from sn29_growth.atomic import atomic_directory, atomic_write_json, atomic_write_text
from sn29_growth.checkpoint import (
    CONFIG_FILE,
    GENERATION_CONFIG_FILE,
    RECIPE_FILE,
    check_destination,
    load_tokenizer,
    write_config,
)
from sn29_growth.growth.card import model_card
from sn29_growth.growth.engine import grow_tensor, new_slices
from sn29_growth.growth.fit import count_params
from sn29_growth.growth.resolve import GrowthPlan, resolve_plan
from sn29_growth.growth.spec import GrowthSpec
from sn29_growth.growth.verify import (
    ProbeResult,
    Verification,
    corpus_sequences,
    tokenizer_for,
)
from sn29_growth.io import CheckpointError, PlannedTensor, ShardedCheckpoint, ShardWriter
from sn29_growth.network.rules import NetworkCheck, check_model
from sn29_growth.network.tokenizer import extend_tokenizer_files

log = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3
EXTRA_FILES = (GENERATION_CONFIG_FILE,)
RECIPE_FORMAT = "sn29-growth-recipe/1"
_SHA = re.compile(r"^[0-9a-f]{40}$")


class GrowthVerificationError(RuntimeError):
    """``verify`` found a mismatch beyond tolerance (or stuck new parameters); nothing was written."""

    def __init__(self, message: str, report: GrowthReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class SourceInfo:
    ref: str
    path: Path
    revision: str | None


@dataclass
class GrowthReport:
    source: SourceInfo
    destination: Path
    plan: GrowthPlan
    parameters_before: int
    parameters_after: int
    files: list[str] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0
    verification: Verification | None = None
    probe: ProbeResult | None = None
    network: NetworkCheck | None = None  # what the network's stack would make of the output
    network_enforced: bool = False  # --verify: a network problem fails the growth
    tokenizer_added: int = 0

    @property
    def ok(self) -> bool:
        network_ok = self.network is None or self.network.ok or not self.network_enforced
        return (
            (self.verification is None or self.verification.ok)
            and (self.probe is None or self.probe.ok or not _all_trainable(self.plan))
            and network_ok
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": {
                "ref": self.source.ref,
                "path": str(self.source.path),
                "revision": self.source.revision,
            },
            "destination": str(self.destination),
            "plan": self.plan.summary(),
            "spec": self.plan.spec.to_dict(),
            "parameters": {"before": self.parameters_before, "after": self.parameters_after},
            "files": self.files,
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 3),
            "tokenizer_tokens_added": self.tokenizer_added,
            "verification": self.verification.to_dict() if self.verification else None,
            "probe": self.probe.to_dict() if self.probe else None,
            "network": self.network.to_dict() if self.network else None,
        }


def _all_trainable(plan: GrowthPlan) -> bool:
    return all(sp.step.init == "trainable" for sp in plan.steps)


def resolve_source(src: str | os.PathLike) -> SourceInfo:
    """A local checkpoint directory, or a Hub ``namespace/name[@revision]`` fetched into the cache."""
    local = Path(src).expanduser()
    if local.is_dir():
        revision = local.name if _SHA.match(local.name) and local.parent.name == "snapshots" else None
        return SourceInfo(str(src), local.resolve(), revision)
    if local.exists():
        raise CheckpointError(f"SRC {src}: not a directory")
    from sn29_growth.hub import fetch_model

    path = Path(fetch_model(str(src)))
    revision = path.name if _SHA.match(path.name) else None
    return SourceInfo(str(src), path, revision)


def _check_tensors(ckpt: ShardedCheckpoint, plan: GrowthPlan) -> list[str]:
    """Validate the source tensors against the config; return the names that are dropped."""
    table = compare_tensors({n: (i.shape, i.dtype) for n, i in ckpt.infos.items()}, plan.source)
    for name in table.unexpected:
        try:
            plan.arch.lookup(name)
        except KeyError:
            raise UnsupportedArchitecture(
                f"{ckpt.infos[name].file}: tensor {name!r} is not part of a {plan.arch.class_name}"
            ) from None
        raise CheckpointError(
            f"{ckpt.infos[name].file}: tensor {name!r} does not fit the config (too many layers?)"
        )
    if table.wrong_shape or table.not_float:
        name = (table.wrong_shape or table.not_float)[0][0]
        raise CheckpointError(f"{ckpt.infos[name].file}: {table.problem()}")
    if table.missing:
        raise CheckpointError(
            f"{ckpt.directory}: {len(table.missing)} tensor(s) missing from the shards, e.g. {table.missing[0]!r}"
        )
    return list(table.dropped)


def output_table(ckpt: ShardedCheckpoint, plan: GrowthPlan) -> list[PlannedTensor]:
    """Every output tensor, in the order the streaming pass produces them."""
    shapes = plan.output_shapes()
    out = []
    for infos in ckpt.shards.values():
        for name in infos:
            if IGNORED_TENSORS.search(name):
                continue
            for out_name in plan.outputs_of(name):
                out.append(PlannedTensor(out_name, plan.torch_dtype, shapes[out_name]))
    if sorted(t.name for t in out) != sorted(shapes):
        raise CheckpointError(f"{ckpt.directory}: the shards do not yield every output tensor")
    return out


def extend_tokenizer(src: Path, dst: Path, old_vocab: int, new_vocab: int) -> int:
    """Copy the tokenizer files, adding ``<|extra_i|>`` tokens when the vocabulary grows past them.

    The files are extended in place (:func:`~sn29_growth.network.tokenizer.extend_tokenizer_files`,
    in the network's format: every id below ``new_vocab`` gets a token) and then loaded back to check
    that its ids are exactly ``0..new_vocab-1``. ``len(tokenizer)`` counts tokens, not the id range: a
    tokenizer with gaps in its ids (cl100k: 100,261 tokens, largest id 100,276) reports fewer.
    """
    added = extend_tokenizer_files(src, dst, old_vocab, new_vocab)
    if added:
        ids = set(load_tokenizer(dst).get_vocab().values())
        missing = [i for i in range(new_vocab) if i not in ids]
        largest = max(ids, default=-1)
        if missing or largest >= new_vocab:
            raise ValueError(
                f"--vocab-size: the extended tokenizer does not have exactly the ids 0..{new_vocab - 1}: "
                f"{len(missing)} id(s) without a token (first {missing[:5]}), largest id {largest}"
            )
    return added


def _write_weights(
    ckpt: ShardedCheckpoint, plan: GrowthPlan, out: Path, max_shard_bytes: int
) -> tuple[list[str], int]:
    from sn29_growth.progress import Progress

    table = output_table(ckpt, plan)
    writer = ShardWriter(out, table, max_shard_bytes, metadata={"sn29_growth": "grow"}, background=True)
    source_bytes = sum(i.nbytes for name, i in ckpt.infos.items() if not IGNORED_TENSORS.search(name))
    shards = len(ckpt.files)
    # a line every 30 s (source bytes grown, rate, ETA) besides the line per shard: a shard can take minutes
    progress = Progress(source_bytes, "grow", unit="B", unit_scale=True, bar=False, logger=log)
    try:
        for index, shard in enumerate(ckpt.iter_shards()):
            t0 = time.perf_counter()
            for name in shard.names:
                if IGNORED_TENSORS.search(name):
                    continue
                for out_name, tensor in grow_tensor(name, shard.read(name), plan).items():
                    writer.write(out_name, tensor)
                    del tensor
                progress.update(ckpt.infos[name].nbytes, shards=f"{index}/{shards} done")
            log.info(
                "grew %s (shard %d/%d) in %.1fs", shard.path.name, index + 1, shards, time.perf_counter() - t0
            )
        progress.close()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    files = list(dict.fromkeys(writer.files))
    return files, sum(t.nbytes for t in table)


def recipe_document(report: GrowthReport) -> dict[str, Any]:
    from sn29_growth import __version__

    return {
        "format": RECIPE_FORMAT,
        "package": {"name": "sn29-growth", "version": __version__},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"ref": report.source.ref, "revision": report.source.revision},
        "seed": report.plan.spec.seed,
        "spec": report.plan.spec.to_dict(),
        "plan": report.plan.summary(),
        "parameters": {"source": report.parameters_before, "result": report.parameters_after},
        "verification": report.verification.to_dict() if report.verification else None,
        "probe": report.probe.to_dict() if report.probe else None,
        "new_slices": new_slices(report.plan),
    }


def grow_checkpoint(
    src: str | os.PathLike | SourceInfo,
    dst: str | os.PathLike,
    spec: GrowthSpec,
    *,
    verify: bool = False,
    probe: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
) -> GrowthReport:
    """Grow the checkpoint ``src`` (directory or Hub ref) into the new directory ``dst``.

    ``verify`` compares source and result on the embedded corpus (fp32 and the output dtype) and requires
    the output to pass the network-compatibility rules (``sn29 check``) unless ``spec.off_network``; ``probe``
    runs two training steps and lists new parameters that cannot train. Raises
    :class:`GrowthVerificationError` (leaving nothing at ``dst``) when either fails.
    """
    from sn29_growth.checkpoint import read_model_config
    from sn29_growth.loading import check_norm_divisor

    t0 = time.perf_counter()
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise FileExistsError(f"DST {dst} already exists; choose a new directory")
    source = src if isinstance(src, SourceInfo) else resolve_source(src)
    check_destination(source.path, dst)
    config = read_model_config(source.path)
    check_norm_divisor(config, str(source.path))
    resolve_plan(spec, config)  # flags and architecture are checked before any shard is opened
    ckpt = ShardedCheckpoint(source.path)
    first = next(iter(ckpt.infos.values()), None)
    plan = resolve_plan(spec, config, source_dtype=str(first.torch_dtype) if first else None)
    dropped = _check_tensors(ckpt, plan)
    if dropped:
        log.info(
            "dropping %d tensor(s) that are recomputed or tied: %s", len(dropped), ", ".join(dropped[:3])
        )
    report = GrowthReport(source, dst, plan, count_params(plan.source), count_params(plan.target))
    if probe:
        from sn29_growth.growth.streaming_verify import check_probe_memory

        check_probe_memory(plan)  # refuse before writing anything when the probe cannot fit
    log.info(
        "growing %s (%s, %s params) -> %s (%s params, %s)",
        source.ref,
        plan.arch.class_name,
        f"{report.parameters_before:,}",
        dst,
        f"{report.parameters_after:,}",
        plan.dtype,
    )
    with atomic_directory(dst, overwrite=overwrite) as tmp:
        report.files, report.bytes_written = _write_weights(ckpt, plan, tmp, max_shard_bytes)
        write_config(tmp, plan.output_config())
        for name in EXTRA_FILES:
            if (source.path / name).is_file():
                shutil.copy2(source.path / name, tmp / name)
        report.tokenizer_added = extend_tokenizer(
            source.path, tmp, plan.source.vocab_size, plan.target.vocab_size
        )
        report.network = check_model(tmp)
        report.network_enforced = verify and not spec.off_network
        for finding in report.network.findings:
            log.warning("network check of the output: %s", finding.format())
        if verify:
            from sn29_growth.growth.streaming_verify import layer_map
            from sn29_growth.growth.verify import verify_growth

            # Streams one block of each model at a time: memory is a few blocks, not two models.
            report.verification = verify_growth(
                source.path,
                tmp,
                dtypes=("float32", plan.dtype),
                exact_storage=plan.exact_storage,
                layers=layer_map(plan),
            )
        if probe:
            from sn29_growth.growth.streaming_verify import probe_checkpoint

            seqs = corpus_sequences(tokenizer_for(source.path), split="train", samples=4, max_len=128)
            report.probe = probe_checkpoint(tmp, plan, seqs)  # embedding, head and a bounded set of blocks
        report.seconds = time.perf_counter() - t0
        if not report.ok:
            why = "verification"
            if report.network_enforced and report.network and not report.network.ok:
                why = f"the network check ({report.network.errors[0].format()})"
            raise GrowthVerificationError(f"{why} of {dst} failed; nothing was written", report)
        atomic_write_json(tmp / RECIPE_FILE, recipe_document(report))
        atomic_write_text(tmp / "README.md", model_card(report))
        report.files += [CONFIG_FILE, RECIPE_FILE, "README.md"]
    report.seconds = time.perf_counter() - t0
    log.info("wrote %s in %.1fs", dst, report.seconds)
    return report
