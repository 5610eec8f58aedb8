"""The reference validator's ``tokenize`` rule, written out on its own, for the slow parity suite.

Runs with the Python of the network's tokenizer stack (transformers 4.44.0 / tokenizers 0.19.1) and
imports only the standard library and transformers. It reads one JSON object on stdin::

    {"texts": [...], "jobs": [{"folder": F, "settings": [[cap_sample_len, max_len, max_invalid], ...]}]}

and writes one JSON object on stdout: ``{"versions": {...}, "results": [...]}``, per job either
``{"load_error": "..."}`` (``AutoTokenizer.from_pretrained(F)`` raised) or ``{"runs": [...]}``, per
settings ``{"items": [[ids, capped, status], ...], "invalid": N, "rejected": bool}`` where ``status`` is
null, ``"invalid"`` (decode round trip failed; ids are null) or ``"too_long"`` (ids are null).

Per text, as the validator does it: a text longer than ``cap_sample_len`` is cut at ``rfind(' ', 0, cap)``
(at ``cap`` when there is no space) and marked capped; ``ids = tokenizer(row, truncation=False)
["input_ids"]``; ``tokenizer.decode(ids) != row`` makes the sample invalid (more than ``max_invalid``
invalid samples reject the tokenizer with a ValueError); otherwise EOS is appended unless the text was
capped; more than ``max_len`` ids is too long.
"""

import json
import sys


def tokenize(tokenizer, texts, cap_sample_len, max_len, max_invalid):
    items = []
    invalid = 0
    for row in texts:
        capped = False
        if cap_sample_len and len(row) > cap_sample_len:
            cut = row.rfind(" ", 0, cap_sample_len)
            if cut == -1:
                cut = cap_sample_len
            row = row[:cut]
            capped = True
        ids = tokenizer(row, truncation=False)["input_ids"]
        if tokenizer.decode(ids) != row:
            invalid += 1
            items.append([None, capped, "invalid"])
            continue
        if not capped:
            ids += [tokenizer.eos_token_id]
        if max_len and len(ids) > max_len:
            items.append([None, capped, "too_long"])
            continue
        items.append([list(ids), capped, None])
    return {"items": items, "invalid": invalid, "rejected": invalid > max_invalid}


def main():
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    request = json.loads(sys.stdin.read())
    results = []
    for job in request["jobs"]:
        try:
            tokenizer = AutoTokenizer.from_pretrained(job["folder"])
        except Exception as e:
            results.append({"load_error": f"{type(e).__name__}: {e}"})
            continue
        runs = [tokenize(tokenizer, request["texts"], *settings) for settings in job["settings"]]
        results.append({"runs": runs})
    versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__}
    sys.stdout.write(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main()
