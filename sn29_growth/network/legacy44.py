"""Score model folders exactly as a live SN29 validator does: transformers 4.44.0 / tokenizers 0.19.1.

A standalone script, run INSIDE the network's side venv (see :mod:`sn29_growth.network.parity`); it
imports only the standard library, torch and transformers 4.44 — never ``sn29_growth``::

    python legacy44.py REQUEST.json RESPONSE.json

The request is ``{"models": [PATH, ...], "texts": [TEXT, ...], "attn_implementation": "eager"}``
(optional: ``"threads"``, and ``"patch_norm_divisor": false``, which only negative controls use). For
each folder it loads the tokenizer (``AutoTokenizer``) and the model (``AutoModelForCausalLM``, fp32),
after applying our own small ``norm_divisor`` patch for 4.44 (every ``LlamaRMSNorm``/``Phi3RMSNorm``
divides the sum of squares by ``config.norm_divisor`` instead of taking the mean; a model whose RMSNorms
cannot all be patched is refused). Then each text goes through the SN29 rule: ``ids =
tokenizer(text)["input_ids"]``; ``decode(ids) != text`` scores +inf; EOS is appended; the score is the
SUM over positions of ``CE(logits[:-1], ids[1:])``. The network runs flash attention; on the eager and
SDPA kernels a Phi3 ``sliding_window`` is applied as that flash path applies it (:func:`flash_window_mask`).

The response holds, per model: ``load_error`` (a folder that fails to load is a result, not a crash),
what 4.44 read from the config (``rope_theta``, ``rope_scaling``, ``head_dim``, ``torch_dtype``,
``norm_divisor``, the model class), the loading info (missing/unexpected keys) and, per sample, ``ids``,
``round_trip_ok``, ``decoded`` (when it differs) and ``loss`` (null for +inf).
"""

from __future__ import annotations

import json
import math
import sys
import traceback
import types

RMSNORM_CLASSES = ("LlamaRMSNorm", "Phi3RMSNorm")


def _divisor_forward(self, hidden_states):
    """4.44's RMSNorm forward with ``sum(x²)/norm_divisor`` in place of ``mean(x²)``, same dtype order."""
    import torch

    input_dtype = hidden_states.dtype
    hidden_states = hidden_states.to(torch.float32)
    variance = hidden_states.pow(2).sum(-1, keepdim=True) / self.norm_divisor
    hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
    return self.weight * hidden_states.to(input_dtype)


def _valid_divisor(value) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def patch_norm_divisor(model) -> int:
    """Make every RMSNorm of ``model`` use ``config.norm_divisor``; returns how many were patched.

    Raises ``ValueError`` when the divisor is invalid or any RMSNorm-like module is not one of 4.44's
    Llama/Phi3 classes (a model whose norms are not all patched would score a silently wrong loss).
    """
    divisor = getattr(model.config, "norm_divisor", None)
    if divisor is None:
        return 0
    if not _valid_divisor(divisor):
        raise ValueError(f"norm_divisor={divisor!r} is not a positive finite number")
    norms = [(name, m) for name, m in model.named_modules() if type(m).__name__.endswith("RMSNorm")]
    if not norms:
        raise ValueError(f"norm_divisor={divisor} but {type(model).__name__} has no RMSNorm module")
    foreign = [f"{name} ({type(m).__name__})" for name, m in norms if type(m).__name__ not in RMSNORM_CLASSES]
    if foreign:
        raise ValueError(
            f"norm_divisor={divisor}: cannot patch {len(foreign)} RMSNorm module(s): {foreign[0]}"
        )
    for _, m in norms:
        m.norm_divisor = float(divisor)
        m.forward = types.MethodType(_divisor_forward, m)
    unpatched = [name for name, m in norms if getattr(m.forward, "__func__", None) is not _divisor_forward]
    if unpatched:
        raise ValueError(
            f"norm_divisor={divisor}: {len(unpatched)} RMSNorm module(s) not patched: {unpatched[0]}"
        )
    return len(norms)


def _jsonable(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def what_it_read(model) -> dict:
    """The values 4.44 actually runs with (head_dim from the attention module: 4.44 derives it)."""
    config = model.config
    dtype = getattr(config, "torch_dtype", None)
    attn = None
    for m in model.modules():
        if hasattr(m, "head_dim") and hasattr(m, "num_heads"):
            attn = m
            break
    return {
        "model_class": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "rope_theta": _jsonable(getattr(config, "rope_theta", None)),
        "rope_scaling": _jsonable(getattr(config, "rope_scaling", None)),
        "head_dim": None if attn is None else int(attn.head_dim),
        "config_head_dim": _jsonable(getattr(config, "head_dim", None)),
        "torch_dtype": None if dtype is None else str(dtype).removeprefix("torch."),
        "norm_divisor": _jsonable(getattr(config, "norm_divisor", None)),
        "rms_norm_eps": _jsonable(getattr(config, "rms_norm_eps", None)),
        "vocab_size": _jsonable(getattr(config, "vocab_size", None)),
        "parameter_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }


def flash_window_mask(model, length: int):
    """The attention pattern the network's flash attention gives Phi3's ``sliding_window`` w, as a 4D mask
    for the eager and SDPA kernels (which ignore the window in 4.44), or None where no mask is needed.

    4.44's flash path applies the window once the keys outnumber w, with flash-attn's
    ``window_size=(w, w)``: query q attends keys q - w ... q. Under flash_attention_2 itself, None.
    """
    import torch

    window = getattr(model.config, "sliding_window", None)
    if (
        model.config._attn_implementation == "flash_attention_2"
        or getattr(model.config, "model_type", None) != "phi3"
        or not isinstance(window, int)
        or window < 0
        or length <= window
    ):
        return None
    pos = torch.arange(length)
    keep = (pos[None, :] <= pos[:, None]) & (pos[None, :] >= pos[:, None] - window)
    dtype = next(model.parameters()).dtype
    return torch.zeros(length, length, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)[None, None]


def score_text(tokenizer, model, text: str) -> dict:
    """The SN29 rule for one text (never capped): ids, round trip, EOS, summed CE."""
    import torch

    ids = [int(i) for i in tokenizer(text)["input_ids"]]
    decoded = tokenizer.decode(ids)
    out = {"ids": ids, "round_trip_ok": decoded == text, "loss": None}
    if decoded != text:
        out["decoded"] = decoded
        return out
    full = [*ids, int(tokenizer.eos_token_id)]
    if len(full) < 2:
        out["loss"] = 0.0
        return out
    with torch.no_grad():
        logits = (
            model(
                torch.tensor([full], dtype=torch.long),
                attention_mask=flash_window_mask(model, len(full)),
                use_cache=False,
            )
            .logits[0]
            .float()
        )
        ce = torch.nn.functional.cross_entropy(
            logits[:-1], torch.tensor(full[1:], dtype=torch.long), reduction="none"
        )
    loss = float(ce.double().sum())
    out["loss"] = loss if math.isfinite(loss) else None
    return out


def score_model(path: str, texts: list[str], attn_implementation: str, patch: bool = True) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result: dict = {"path": path, "load_error": None, "config": None, "samples": []}
    stage = "tokenizer"
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        result["tokenizer"] = {
            "class": type(tokenizer).__name__,
            "eos_token_id": tokenizer.eos_token_id,
            "clean_up_tokenization_spaces": getattr(tokenizer, "clean_up_tokenization_spaces", None),
        }
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has no eos_token_id")
        stage = "model"
        model, info = AutoModelForCausalLM.from_pretrained(
            path,
            torch_dtype=torch.float32,
            attn_implementation=attn_implementation,
            output_loading_info=True,
            use_safetensors=True,
        )
        model.eval()
        result["loading_info"] = {k: sorted(map(str, v)) for k, v in info.items() if k != "error_msgs"}
        result["loading_info"]["error_msgs"] = [str(e) for e in info.get("error_msgs", [])]
        result["config"] = what_it_read(model)
        stage = "norm_divisor patch"
        result["norms_patched"] = patch_norm_divisor(model) if patch else 0
    except Exception as e:  # a folder 4.44 cannot load is a result
        result["load_error"] = f"{stage}: {type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc(limit=6)
        return result
    for text in texts:
        result["samples"].append(score_text(tokenizer, model, text))
    return result


def run(request: dict) -> dict:
    import tokenizers
    import torch
    import transformers

    torch.manual_seed(0)
    torch.set_num_threads(int(request.get("threads") or 1))
    texts = list(request.get("texts") or [])
    attn = request.get("attn_implementation") or "eager"
    patch = request.get("patch_norm_divisor", True) is not False  # False only to show the patch matters
    return {
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "attn_implementation": attn,
        "patch_norm_divisor": patch,
        "models": [score_model(str(p), texts, attn, patch) for p in request.get("models") or []],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python legacy44.py REQUEST.json RESPONSE.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        request = json.load(f)
    response = run(request)
    tmp = argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(response, f)
    import os

    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
