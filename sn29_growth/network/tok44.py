"""The SN29 tokenization rule on the network's own stack: transformers 4.44.0 + tokenizers 0.19.1.

A standalone worker, run INSIDE the tokenizer side venv (:data:`sn29_growth.network.sidevenv.
TOKENIZER_STACK`); it imports only the standard library and transformers — never ``sn29_growth``,
never torch::

    python -I tok44.py

It reads one JSON request per line on stdin and writes one JSON response per line on stdout (anything
the libraries print goes to stderr). Requests (every response has ``ok``; ``error`` when it is false):

- ``{"op": "versions"}`` → ``versions``;
- ``{"op": "load", "source": FOLDER_OR_HUB_NAME}`` → ``handle`` and ``info`` (class, special ids,
  ``len``, largest id, flags and a fingerprint of everything that decides encoding and decoding). The
  tokenizer is loaded exactly as the reference validator loads it: ``AutoTokenizer.from_pretrained``
  (never remote code; a Hub name is resolved by huggingface_hub as configured by the environment);
- ``{"op": "rule", "handle": H, "texts": [...], "cap_sample_len": C, "max_sequence_len": L,
  "allow_bos": false}`` → ``items``: per text ``[ids or null, capped, failure or null]``, the
  reference's ``tokenize`` (neurons/dataset.py) step by step — cap at the last space before ``C``
  characters, ``ids = tokenizer(text, truncation=False)["input_ids"]``, ``tokenizer.decode(ids) !=
  text`` is a failure (``"bos"`` when only a leading BOS makes it fail, else ``"decode"``), EOS appended
  unless capped, more than ``L`` ids is ``"too_long"``. ``allow_bos`` (a local opt-out, never the
  network's rule) keeps a leading BOS out of the comparison;
- ``{"op": "encode", "handle": H, "texts": [...]}`` → ``ids`` (default special tokens);
- ``{"op": "decode", "handle": H, "ids": [[...], ...]}`` → ``texts``;
- ``{"op": "free", "handle": H}``.

A request that fails (a hostile tokenizer's panic included) answers ``ok: false`` and the worker goes
on; end of input ends it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings

FAILURE_DECODE = "decode"
FAILURE_BOS = "bos"
FAILURE_TOO_LONG = "too_long"


def versions() -> dict:
    import tokenizers
    import transformers

    return {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": sys.version.split()[0],
    }


def cap_text(text: str, cap_sample_len: int) -> tuple[str, bool]:
    if cap_sample_len and len(text) > cap_sample_len:
        cut = text.rfind(" ", 0, cap_sample_len)
        if cut < 0:
            cut = cap_sample_len
        return text[:cut], True
    return text, False


def info(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = tokenizer.get_vocab()
    flags = {
        "class": type(tokenizer).__name__,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "add_bos_token": getattr(tokenizer, "add_bos_token", None),
        "add_eos_token": getattr(tokenizer, "add_eos_token", None),
        "clean_up_tokenization_spaces": getattr(tokenizer, "clean_up_tokenization_spaces", None),
        "legacy": getattr(tokenizer, "legacy", None),
        "add_prefix_space": getattr(tokenizer, "add_prefix_space", None),
        "split_special_tokens": getattr(tokenizer, "split_special_tokens", None),
    }
    h = hashlib.sha256(json.dumps({"flags": flags, "versions": versions()}, sort_keys=True).encode())
    if backend is not None:
        h.update(backend.to_str().encode("utf-8"))
    else:  # a slow tokenizer: its vocabulary and added tokens decide what it does
        h.update(json.dumps(sorted(vocab.items())).encode("utf-8"))
    return {
        **flags,
        "len": len(tokenizer),
        "max_id": max(vocab.values()) if vocab else -1,
        "fast": bool(getattr(tokenizer, "is_fast", False)),
        "fingerprint": h.hexdigest()[:16],
        "versions": versions(),
    }


def decode(tokenizer, ids: list) -> str:
    """``tokenizer.decode(ids)``, exactly: 4.44's ``decode`` first converts its argument with
    ``to_py_obj``, which walks a list element by element through its framework checks (most of the rule's
    time on long texts) but turns an array into the same list of ints with one ``tolist()``."""
    import numpy

    return tokenizer.decode(numpy.asarray(ids, dtype=numpy.int64))


def apply_rule(tokenizer, texts: list, cap_sample_len: int, max_sequence_len: int, allow_bos: bool) -> list:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no eos_token_id; the per-sample rule appends EOS")
    bos = tokenizer.bos_token_id
    capped = [cap_text(t, cap_sample_len) for t in texts]
    encoded = tokenizer([t for t, _ in capped], truncation=False)["input_ids"] if capped else []
    items = []
    for (text, was_capped), ids in zip(capped, encoded, strict=True):
        ids = [int(i) for i in ids]
        leading_bos = bos is not None and len(ids) > 0 and ids[0] == bos
        compared = ids[1:] if allow_bos and leading_bos else ids
        if decode(tokenizer, compared) != text:
            bos_only = leading_bos and not allow_bos and decode(tokenizer, ids[1:]) == text
            items.append([None, was_capped, FAILURE_BOS if bos_only else FAILURE_DECODE])
            continue
        if not was_capped:
            ids.append(int(eos))
        if max_sequence_len and len(ids) > max_sequence_len:
            items.append([None, was_capped, FAILURE_TOO_LONG])
            continue
        items.append([ids, was_capped, None])
    return items


class Worker:
    def __init__(self) -> None:
        self.tokenizers: dict[int, object] = {}
        self.next_handle = 1

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "versions":
            return {"versions": versions()}
        if op == "load":
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(request["source"]), trust_remote_code=False)
            handle = self.next_handle
            self.next_handle += 1
            self.tokenizers[handle] = tokenizer
            return {"handle": handle, "info": info(tokenizer)}
        tokenizer = self.tokenizers.get(request.get("handle"))
        if op == "free":
            self.tokenizers.pop(request.get("handle"), None)
            return {}
        if tokenizer is None:
            raise KeyError(f"unknown tokenizer handle {request.get('handle')!r}")
        if op == "rule":
            items = apply_rule(
                tokenizer,
                list(request["texts"]),
                int(request.get("cap_sample_len") or 0),
                int(request.get("max_sequence_len") or 0),
                bool(request.get("allow_bos")),
            )
            return {"items": items}
        if op == "encode":
            texts = list(request["texts"])
            ids = tokenizer(texts, truncation=False)["input_ids"] if texts else []
            return {"ids": [[int(i) for i in row] for row in ids]}
        if op == "decode":
            return {"texts": [decode(tokenizer, [int(i) for i in row]) for row in request["ids"]]}
        raise ValueError(f"unknown op {op!r}")


def serve(stdin, out) -> None:
    worker = Worker()
    for line in stdin:
        if not line.strip():
            continue
        try:
            response = {"ok": True, **worker.handle(json.loads(line))}
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # a tokenizers PanicException is a BaseException: one request fails
            message = f"{type(e).__name__}: {e}"
            response = {"ok": False, "error": message[:2000]}
        out.write(json.dumps(response, ensure_ascii=True))
        out.write("\n")
        out.flush()


def main() -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    sys.stdin.reconfigure(encoding="utf-8", errors="surrogatepass")
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    serve(sys.stdin, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
