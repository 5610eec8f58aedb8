"""Growth verification and trainability probing with a few blocks in memory, not two whole models.

:func:`verify_streaming` computes what :func:`~sn29_growth.growth.verify.verify_in_memory` computes —
mean token loss of source and result and max |Δlogit| over the old vocabulary on the embedded corpus, in
fp32 and the checkpoint dtype — without instantiating either model:

1. the embedding rows of the sample token ids are read from both checkpoints (lazy safetensors reads);
2. the grown model's blocks are walked in order; each block is one transformers decoder layer
   (``LlamaDecoderLayer``/``Phi3DecoderLayer``, RMSNorms swapped for the ``norm_divisor`` form exactly as
   the patched classes do) built from the config and given only its own tensors. A block that comes from
   a source block runs beside that source block (each on its own hidden states; the grown state's first
   source-width dims are compared, a diagnostic); an inserted block runs alone, and how far it moves the
   residual (zero for an identity block) is logged. Rotary embeddings and the causal mask come from the
   same transformers functions the model calls;
3. final norm, then the output head chunked over the vocabulary (rows read lazily): old-vocabulary logits
   are compared chunk by chunk, the loss is a log-sum-exp over every chunk of the grown vocabulary. Full
   logits never exist at once. The verdict (:func:`~sn29_growth.growth.verify.dtype_check`, the same
   tolerances) rests on these losses and logits only.

Resident memory: one decoder layer (the source block is freed before its grown copy is built), one
head chunk of each model, the hidden states of the samples (a few MB).

:func:`probe_checkpoint` runs :func:`~sn29_growth.growth.verify.probe_trainability` on a bounded model:
embedding, head, final norm and at most :data:`PROBE_MAX_LAYERS` blocks — every block of a shallow model,
otherwise the first block grown from a source block and the first inserted block (every non-inserted block
gets the same new slices, every inserted block is new as a whole), renamed back to their output indices.
:func:`probe_memory_estimate` says what that needs, and :func:`check_probe_memory` refuses up front, with
the number and how to skip the probe, when it does not fit.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from sn29_growth.growth.engine import NewMask
    from sn29_growth.growth.resolve import GrowthPlan
    from sn29_growth.growth.verify import DtypeCheck, ProbeResult, Verification

log = logging.getLogger(__name__)

STREAMING_MODEL_TYPES = ("llama", "phi3")
HEAD_CHUNK_BYTES = 64 * 1024**2  # fp32 bytes of one chunk of output-head rows
PROBE_MAX_LAYERS = 4  # deeper models are probed on one block of each kind
# fp32 weight, gradient, two AdamW moments, the start copy, boolean masks
PROBE_BYTES_PER_PARAM = 4 * 5 + 2
# embedding and head: each backward also makes a dense fp32 gradient before accumulating it (x3 margin)
PROBE_VOCAB_BYTES_PER_PARAM = 4 * 3
PROBE_BASE_BYTES = 256 * 1024**2  # interpreter, torch, transformers, tokenizer, corpus
PROBE_MEMORY_FRACTION = 0.9  # of the memory available when the probe is planned


class ProbeMemoryError(RuntimeError):
    """The trainability probe would not fit in memory; the message says what it needs and how to skip it."""


# --- reading -----------------------------------------------------------------------------------------------


def _family(model_type: str):
    """(decoder layer, rotary embedding, RMSNorm) classes of the stock transformers family."""
    from sn29_growth.loading import ensure_patched

    ensure_patched(model_type)
    if model_type == "llama":
        from transformers.models.llama import modeling_llama as m

        return m.LlamaDecoderLayer, m.LlamaRotaryEmbedding, m.LlamaRMSNorm
    if model_type == "phi3":
        from transformers.models.phi3 import modeling_phi3 as m

        return m.Phi3DecoderLayer, m.Phi3RotaryEmbedding, m.Phi3RMSNorm
    raise ValueError(
        f"streaming verification supports {', '.join(STREAMING_MODEL_TYPES)}, not {model_type!r}"
    )


class _Checkpoint:
    """One checkpoint opened for lazy reads: its config (as the loader builds it) and its tensors."""

    def __init__(self, path: str | os.PathLike, attn_implementation: str = "sdpa") -> None:
        from sn29_growth.arch import SUPPORTED
        from sn29_growth.checkpoint import read_model_config
        from sn29_growth.io import ShardedCheckpoint
        from sn29_growth.loading import ModelLoadError, check_norm_divisor, check_tensor_table, load_config

        self.path = Path(path)
        self.raw = read_model_config(self.path)
        self.divisor = check_norm_divisor(self.raw, str(self.path))
        self.model_type = self.raw.get("model_type")
        self.layer_cls, self.rotary_cls, self.norm_cls = _family(self.model_type)
        archs = self.raw.get("architectures")
        if archs is not None and archs != [SUPPORTED[self.model_type]]:
            raise ModelLoadError(
                f"{self.path}: model_type {self.model_type!r} but architectures says {archs!r}"
            )
        check_tensor_table(self.path, self.raw)  # names and shapes, as load_model checks them
        self.config = load_config(self.path, attn_implementation=attn_implementation)
        self.ckpt = ShardedCheckpoint(self.path)
        self._files: dict[Path, BinaryIO] = {}

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def head_name(self) -> str:
        return "model.embed_tokens.weight" if self.config.tie_word_embeddings else "lm_head.weight"

    def _file(self, path: Path) -> BinaryIO:
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = path.open("rb")
        return f

    def read(self, name: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows ``[start, stop)`` of tensor ``name`` (the whole tensor by default), in its stored dtype."""
        from sn29_growth.io import CheckpointError

        info = self.ckpt.infos[name]
        rows = info.shape[0] if info.shape else 1
        stop = rows if stop is None else min(stop, rows)
        row_bytes = info.nbytes // max(rows, 1)
        shape = (stop - start, *info.shape[1:]) if info.shape else ()
        out = torch.empty(shape, dtype=info.torch_dtype)
        n = (stop - start) * row_bytes
        if n:
            f = self._file(info.file)
            f.seek(info.start + start * row_bytes)
            if f.readinto(memoryview(out.reshape(-1).view(torch.uint8).numpy())) != n:
                raise CheckpointError(f"{info.file}: truncated while reading {name!r}")
        return out

    def rows(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """The rows ``ids`` (sorted, unique) of a 2-D tensor, in its stored dtype."""
        return torch.cat([self.read(name, i, i + 1) for i in ids.tolist()]) if ids.numel() else torch.empty(0)

    def layer(self, index: int, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
        """Decoder layer ``index`` with only its own tensors, RMSNorms in the ``norm_divisor`` form."""
        from sn29_growth.loading import verify_norms
        from sn29_growth.norm import install_norm_divisor

        with torch.device("meta"):
            layer = self.layer_cls(self.config, index)
        install_norm_divisor(layer, self.divisor)
        prefix = f"model.layers.{index}."
        state = {k: self.read(prefix + k).to(device=device, dtype=dtype) for k in layer.state_dict()}
        layer.load_state_dict(state, strict=True, assign=True)
        verify_norms(layer, self.divisor, f"{self.path} block {index}")
        return layer.eval()

    def final_norm(self, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
        from sn29_growth.loading import verify_norms
        from sn29_growth.norm import install_norm_divisor

        with torch.device("meta"):
            holder = torch.nn.ModuleDict(
                {"norm": self.norm_cls(self.hidden_size, eps=self.config.rms_norm_eps)}
            )
        install_norm_divisor(holder, self.divisor)
        weight = self.read("model.norm.weight").to(device=device, dtype=dtype)
        holder.load_state_dict({"norm.weight": weight}, strict=True, assign=True)
        verify_norms(holder, self.divisor, f"{self.path} final norm")
        return holder["norm"].eval()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> _Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the walk ----------------------------------------------------------------------------------------------


def layer_map(plan: GrowthPlan) -> tuple[int | None, ...]:
    """For every output block: the source block it is grown from, or None for an inserted block."""
    cur: list[int | None] = list(range(plan.source.num_hidden_layers))
    for sp in plan.steps:
        cur = [None if ls.inserted else cur[ls.source] for ls in sp.layers]
    return tuple(cur)


def _pairing(
    layers: Sequence[int | None] | None, n_src: int, n_out: int
) -> tuple[list[tuple[int | None, int | None]], bool]:
    """The walk: (source block, grown block) pairs in order, None on one side running the other alone,
    and whether it follows the map (then a grown block without a source block is an inserted one)."""
    if layers is None and n_src == n_out:
        layers = list(range(n_out))
    if (
        layers is not None
        and len(layers) == n_out
        and [s for s in layers if s is not None] == list(range(n_src))
    ):
        return [(s, i) for i, s in enumerate(layers)], True
    if layers is not None:
        log.warning(
            "verify: the block map does not fit %d -> %d blocks; comparing outputs only", n_src, n_out
        )
    # No usable map: both stacks run in full, one after the other; only the outputs are compared.
    return [(s, None) for s in range(n_src)] + [(None, i) for i in range(n_out)], False


class _Context:
    """Per-sample positions, rotary embeddings and causal mask of one model, as its forward builds them."""

    def __init__(self, model: _Checkpoint, device: torch.device) -> None:
        self.model = model
        self.rotary = model.rotary_cls(config=model.config).to(device)
        self._cache: dict[tuple[int, torch.dtype], dict[str, Any]] = {}

    def kwargs(self, h: torch.Tensor) -> dict[str, Any]:
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        key = (h.shape[1], h.dtype)
        if key not in self._cache:
            pos = torch.arange(h.shape[1], device=h.device)[None]
            cfg = self.model.config
            mask_fn = create_causal_mask
            if getattr(cfg, "sliding_window", None) is not None:
                mask_fn = create_sliding_window_causal_mask
            mask = mask_fn(config=cfg, inputs_embeds=h, attention_mask=None, cache=None, position_ids=pos)
            self._cache[key] = {
                "attention_mask": mask,
                "position_ids": pos,
                "position_embeddings": self.rotary(h, position_ids=pos),
            }
        return self._cache[key]


def _run(layer: torch.nn.Module, ctx: _Context, states: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for h in states:
        y = layer(h, **ctx.kwargs(h))
        out.append(y[0] if isinstance(y, tuple) else y)
    return out


@dataclass
class StreamStats:
    """What the block walk saw (diagnostics; the verdict is the loss and logit comparison)."""

    paired_blocks: int = 0
    inserted_blocks: int = 0
    # max |grown hidden[..., :d_source] - source hidden| after a paired block (exact for zero-padding;
    # clone noise shows up here, cancelling only across the copies)
    hidden_dev: float = 0.0
    # max |output - input| of an inserted block (an identity block leaves the residual unchanged)
    identity_dev: float = 0.0
    per_block: list[tuple[int | None, int | None, float]] = field(default_factory=list)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


@dataclass
class _Head:
    """Running log-sum-exp parts and target logits of one model over the samples."""

    lse: list[list[torch.Tensor]]
    target: list[torch.Tensor]

    @classmethod
    def empty(cls, seqs: Sequence[torch.Tensor]) -> _Head:
        return cls([[] for _ in seqs], [torch.zeros(s.numel() - 1) for s in seqs])

    def add(self, j: int, logits: torch.Tensor, targets: torch.Tensor, start: int) -> None:
        """``logits``: fp32 [T, rows] of vocabulary rows ``start..``; the loss uses positions [:-1]."""
        body = logits[:-1]
        self.lse[j].append(torch.logsumexp(body, dim=-1).cpu())
        hit = (targets >= start) & (targets < start + logits.shape[1])
        if bool(hit.any()):
            pos = hit.nonzero().flatten()
            self.target[j][pos] = body[pos.to(body.device), (targets[pos] - start).to(body.device)].cpu()

    def loss_sum(self) -> float:
        return sum(
            (torch.logsumexp(torch.stack(parts), dim=0) - t).sum().item()
            for parts, t in zip(self.lse, self.target, strict=True)
            if parts
        )


def _head_rows(hidden: int, vocab: int, chunk_bytes: int) -> int:
    return max(1, min(vocab, chunk_bytes // (4 * max(hidden, 1))))


@torch.no_grad()
def compare_streaming(
    source: _Checkpoint,
    grown: _Checkpoint,
    sequences: Sequence[torch.Tensor],
    *,
    dtype: str,
    exact_storage: bool = True,
    layers: Sequence[int | None] | None = None,
    device: torch.device | str = "cpu",
    head_chunk_bytes: int = HEAD_CHUNK_BYTES,
) -> tuple[DtypeCheck, StreamStats]:
    """The :class:`DtypeCheck` of :func:`~sn29_growth.growth.verify.compare_models`, block by block."""
    from sn29_growth.growth.verify import dtype_check

    device = torch.device(device)
    tdt = getattr(torch, dtype)
    seqs = [s.to(torch.long) for s in sequences]
    targets = [s[1:] for s in seqs]
    old_vocab, new_vocab = source.vocab_size, grown.vocab_size
    d_src = source.hidden_size
    ids = torch.unique(torch.cat(seqs)) if seqs else torch.empty(0, dtype=torch.long)
    states = []
    for m in (source, grown):
        table = m.rows("model.embed_tokens.weight", ids).to(device=device, dtype=tdt)
        states.append([table[torch.searchsorted(ids, s).to(device)][None] for s in seqs])
        del table
    hs, hg = states
    cs, cg = _Context(source, device), _Context(grown, device)
    stats = StreamStats()
    pairs, mapped = _pairing(layers, source.num_layers, grown.num_layers)
    for si, gi in pairs:
        if si is not None:
            layer = source.layer(si, tdt, device)
            hs = _run(layer, cs, hs)
            del layer
        if gi is not None:
            layer = grown.layer(gi, tdt, device)
            new = _run(layer, cg, hg)
            del layer
            if si is None and mapped:
                dev = max((_max_abs(a, b) for a, b in zip(new, hg, strict=True)), default=0.0)
                stats.inserted_blocks += 1
                stats.identity_dev = max(stats.identity_dev, dev)
                stats.per_block.append((None, gi, dev))
            hg = new
        if si is not None and gi is not None:
            dev = max((_max_abs(g[..., :d_src], s) for g, s in zip(hg, hs, strict=True)), default=0.0)
            stats.paired_blocks += 1
            stats.hidden_dev = max(stats.hidden_dev, dev)
            stats.per_block.append((si, gi, dev))
    hs = _normed(source, hs, tdt, device)
    hg = _normed(grown, hg, tdt, device)

    head_s, head_g = _Head.empty(seqs), _Head.empty(seqs)
    diff = 0.0
    vocab = max(old_vocab, new_vocab)
    rows = _head_rows(max(source.hidden_size, grown.hidden_size), vocab, head_chunk_bytes)
    for start in range(0, vocab, rows):
        stop = min(start + rows, vocab)
        wg = ws = None
        if start < new_vocab:
            wg = grown.read(grown.head_name, start, min(stop, new_vocab)).to(device=device, dtype=tdt)
        if start < old_vocab:
            ws = source.read(source.head_name, start, min(stop, old_vocab)).to(device=device, dtype=tdt)
        for j in range(len(seqs)):
            lg = ls = None
            if wg is not None:
                lg = F.linear(hg[j], wg).float()
                head_g.add(j, lg, targets[j], start)
            if ws is not None:
                ls = F.linear(hs[j], ws).float()
                head_s.add(j, ls, targets[j], start)
            if lg is not None and ls is not None:
                cols = min(lg.shape[1], ls.shape[1])
                diff = max(diff, _max_abs(ls[:, :cols], lg[:, :cols]))
        del wg, ws
    n = max(sum(int(s.numel()) - 1 for s in seqs), 1)
    check = dtype_check(
        dtype,
        head_s.loss_sum() / n,
        head_g.loss_sum() / n,
        diff,
        old_vocab=old_vocab,
        new_vocab=new_vocab,
        exact_storage=exact_storage,
    )
    return check, stats


def _normed(model: _Checkpoint, states: list[torch.Tensor], dtype: torch.dtype, device) -> list[torch.Tensor]:
    norm = model.final_norm(dtype, device)
    return [norm(h)[0] for h in states]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def _exact_fp32(device: torch.device):
    """fp32 matmuls in full fp32 on CUDA (no TF32, whatever the process set): the fp32 tolerance is 1e-5."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def verify_streaming(
    source_dir: str | os.PathLike,
    grown_dir: str | os.PathLike,
    *,
    dtypes: Sequence[str] = ("float32",),
    samples: int = 8,
    max_len: int = 256,
    exact_storage: bool = True,
    layers: Sequence[int | None] | None = None,
    device: torch.device | str | None = None,
    head_chunk_bytes: int = HEAD_CHUNK_BYTES,
) -> Verification:
    """:func:`~sn29_growth.growth.verify.verify_growth` with a few blocks resident (see the module doc).

    ``layers``: for every output block the source block it comes from, None for an inserted one
    (:func:`layer_map`); without it, equal depths are paired one to one and otherwise both stacks run
    in full, one block at a time. ``device``: where the blocks run (default: CUDA when available).
    """
    from sn29_growth.growth.verify import Verification, corpus_sequences, log_check, tokenizer_for

    device = torch.device(device) if device is not None else default_device()
    seqs = corpus_sequences(tokenizer_for(source_dir), samples=samples, max_len=max_len)
    checks = []
    with _Checkpoint(source_dir) as src, _Checkpoint(grown_dir) as grown, _exact_fp32(device):
        for dtype in dict.fromkeys(dtypes):
            check, stats = compare_streaming(
                src,
                grown,
                seqs,
                dtype=dtype,
                exact_storage=exact_storage,
                layers=layers,
                device=device,
                head_chunk_bytes=head_chunk_bytes,
            )
            log.info(
                "verify %s (streaming, %s): %d paired block(s), hidden max |Δ| on the source dims %.2e; "
                "%d inserted block(s), max |Δresidual| %.2e",
                dtype,
                device,
                stats.paired_blocks,
                stats.hidden_dev,
                stats.inserted_blocks,
                stats.identity_dev,
            )
            log_check(check)
            checks.append(check)
    tokens = sum(s.numel() - 1 for s in seqs)
    return Verification(tuple(checks), len(seqs), tokens, all(c.ok for c in checks))


def supports_streaming(path: str | os.PathLike) -> bool:
    from sn29_growth.checkpoint import read_model_config

    return read_model_config(path).get("model_type") in STREAMING_MODEL_TYPES


# --- the probe ---------------------------------------------------------------------------------------------


def probe_layers(layers: Sequence[int | None], max_layers: int = PROBE_MAX_LAYERS) -> tuple[int, ...]:
    """Output blocks the probe trains: all of a shallow model, else one grown and one inserted block."""
    if len(layers) <= max_layers:
        return tuple(range(len(layers)))
    picks = [next((i for i, s in enumerate(layers) if s is not None), None)]
    picks.append(next((i for i, s in enumerate(layers) if s is None), None))
    return tuple(sorted({i for i in picks if i is not None}))


def probe_memory_estimate(plan: GrowthPlan, blocks: Sequence[int], *, max_len: int = 128) -> int:
    """Bytes the probe of ``blocks`` needs: fp32 weights, gradients, AdamW state, start copies, and the
    activations of one sample of ``max_len`` tokens (samples run one at a time)."""
    shapes = plan.output_shapes()
    keep = {f"model.layers.{i}." for i in blocks}
    params = vocab_params = 0
    for name, shape in shapes.items():
        if name.startswith("model.layers.") and not any(name.startswith(k) for k in keep):
            continue
        params += math.prod(shape)
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            vocab_params += math.prod(shape)
    t = plan.target
    # activations kept for backward per block and token (a generous count), and the fp32 logits with
    # their softmax and gradient for one sample
    per_token = 16 * t.hidden_size + 4 * t.intermediate_size + 4 * t.num_attention_heads * max_len
    acts = 4 * max_len * (len(blocks) * per_token + 4 * t.vocab_size)
    return (
        params * PROBE_BYTES_PER_PARAM + vocab_params * PROBE_VOCAB_BYTES_PER_PARAM + acts + PROBE_BASE_BYTES
    )


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable``), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB ({n:,} bytes)"


def check_probe_memory(plan: GrowthPlan, available: int | None = None) -> int:
    """The probe's memory estimate; raises :class:`ProbeMemoryError` when it exceeds what is available."""
    blocks = probe_layers(layer_map(plan))
    need = probe_memory_estimate(plan, blocks)
    available = available_memory() if available is None else available
    if available is not None and need > PROBE_MEMORY_FRACTION * available:
        raise ProbeMemoryError(
            f"--probe needs about {_gib(need)} of memory (fp32 weights, gradients and AdamW state of "
            f"the embedding, head and {len(blocks)} block(s) {list(blocks)} of "
            f"{plan.target.num_hidden_layers}) but {_gib(available)} is available; run without --probe "
            f"(probe=False) to skip it, or on a machine with more memory"
        )
    return need


def _is_alloc_error(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, torch.OutOfMemoryError) or "alloc" in text.lower() or "out of memory" in text


def probe_checkpoint(
    path: str | os.PathLike,
    plan: GrowthPlan,
    sequences: Sequence[torch.Tensor],
    *,
    steps: int = 2,
    max_layers: int = PROBE_MAX_LAYERS,
) -> ProbeResult:
    """Probe the grown checkpoint at ``path`` on its embedding, head and a bounded set of blocks.

    Stuck slices are reported under their names in the full model. An allocator failure becomes a
    :class:`ProbeMemoryError` that names the estimate and how to skip the probe.
    """
    from sn29_growth.growth.engine import new_masks
    from sn29_growth.growth.verify import probe_trainability

    blocks = probe_layers(layer_map(plan), max_layers)
    need = probe_memory_estimate(plan, blocks)
    try:
        model, rename = _probe_model(path, blocks)
        masks = _subset_masks(new_masks(plan), rename)
        result = probe_trainability(model, masks, sequences, steps=steps, log_stuck=False)
        del model
    except (RuntimeError, MemoryError) as e:
        if isinstance(e, MemoryError) or _is_alloc_error(e):
            raise ProbeMemoryError(
                f"--probe ran out of memory ({type(e).__name__}); it needs about {_gib(need)}. Run without "
                f"--probe (probe=False) to skip it, or on a machine with more memory"
            ) from e
        raise
    back = {v: k for k, v in rename.items()}
    result = result.renamed(back, tuple(blocks) if len(blocks) < plan.target.num_hidden_layers else None)
    for s in result.stuck:
        log.warning("stuck: %s", s)
    return result


def _block_name(name: str, mapping: dict[int, int]) -> str:
    if not name.startswith("model.layers."):
        return name
    index, rest = name.removeprefix("model.layers.").split(".", 1)
    return f"model.layers.{mapping[int(index)]}.{rest}"


def _subset_masks(masks: dict[str, NewMask], rename: dict[int, int]) -> dict[str, NewMask]:
    out = {}
    for name, mask in masks.items():
        if name.startswith("model.layers."):
            index = int(name.removeprefix("model.layers.").split(".", 1)[0])
            if index not in rename:
                continue
            name = _block_name(name, rename)
        out[name] = mask
    return out


def _probe_model(path: str | os.PathLike, blocks: Sequence[int]) -> tuple[torch.nn.Module, dict[int, int]]:
    """An fp32 causal LM of the checkpoint's embedding, head, final norm and ``blocks`` (renumbered)."""
    from transformers import AutoModelForCausalLM

    from sn29_growth.loading import check_model_class, load_model, verify_norms

    with _Checkpoint(path) as ck:
        if len(blocks) == ck.num_layers:
            return load_model(path), {i: i for i in blocks}
        rename = {b: j for j, b in enumerate(blocks)}
        config = ck.config
        config.num_hidden_layers = len(blocks)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        state = {}
        for name in model.state_dict():
            if name == "lm_head.weight" and ck.config.tie_word_embeddings:
                continue
            src = _block_name(name, {j: b for b, j in rename.items()})
            state[name] = ck.read(src).to(torch.float32)
        model.load_state_dict(state, strict=False, assign=True)
        if ck.config.tie_word_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        model.model.rotary_emb = ck.rotary_cls(config=model.config)
        missing = [n for n, p in model.named_parameters() if p.is_meta]
        if missing:
            raise ValueError(f"{path}: the probe model lacks {missing[:3]}")
        check_model_class(model, ck.raw, str(path))
        verify_norms(model, ck.divisor, str(path))
    return model.eval(), rename
