"""Compare tokenizer folders before and after vocabulary growth as transformers 4.44 loads them.

A standalone script run INSIDE the network's side venv (transformers 4.44.0 / tokenizers 0.19.1; see
``sn29_growth.network.parity.ensure_network_venv``); it imports only the standard library and
transformers::

    python tokenizers44.py REQUEST.json RESPONSE.json

The request is ``{"pairs": [[BEFORE, AFTER], ...], "texts": [TEXT, ...]}``. For each pair both folders
are loaded with ``AutoTokenizer.from_pretrained`` and the response says: the classes and ``len()`` of
both, whether AFTER's ids are exactly ``0..n-1`` (``n`` = its largest id + 1), the indices of texts
whose ids (``tokenizer(text)["input_ids"]``) or decoded text differ, the ids of BEFORE whose decoding
differs in AFTER, and the ids of AFTER's new tokens that do not encode from their own string to
themselves alone or do not decode back to it.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def _load(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def compare(before_path: str, after_path: str, texts: list[str]) -> dict:
    out: dict = {"before": before_path, "after": after_path, "error": None}
    try:
        before, after = _load(before_path), _load(after_path)
    except Exception:
        out["error"] = traceback.format_exc(limit=3)
        return out
    vb, va = before.get_vocab(), after.get_vocab()
    ids_after = set(va.values())
    out.update(
        classes=[type(before).__name__, type(after).__name__],
        len=[len(before), len(after)],
        id_range=[max(vb.values()) + 1, max(ids_after) + 1],
        contiguous=ids_after == set(range(max(ids_after) + 1)),
    )
    enc_b, enc_a = before(texts)["input_ids"], after(texts)["input_ids"]
    out["texts"] = len(texts)
    out["ids_differ"] = [i for i, (a, b) in enumerate(zip(enc_b, enc_a, strict=True)) if a != b]
    out["decode_differ"] = [i for i, ids in enumerate(enc_b) if before.decode(ids) != after.decode(ids)]
    old_ids = sorted(vb.values())
    out["old_id_decode_differ"] = [i for i in old_ids if before.decode([i]) != after.decode([i])][:20]
    new = sorted((i, t) for t, i in va.items() if t not in vb)
    out["new_tokens"] = len(new)
    out["new_token_problems"] = [
        i for i, t in new if after(t, add_special_tokens=False)["input_ids"] != [i] or after.decode([i]) != t
    ][:20]
    out["new_specials"] = sum(
        1 for i, t in new if after.added_tokens_decoder.get(i) and after.added_tokens_decoder[i].special
    )
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        request = json.load(f)
    response = {"pairs": [compare(a, b, request["texts"]) for a, b in request["pairs"]]}
    tmp = argv[1] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(response, f)
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
