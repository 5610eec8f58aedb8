"""``sn29 check MODEL...``: will the network's validators load and score these models as we do?"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser(
        "check",
        help="check a model folder against what the network's stack (transformers 4.44) loads",
        description=(
            "Apply the network-compatibility rules to model folders (or org/name[@revision] Hub models, of "
            "which only config and tokenizer files are fetched): config keys that transformers 4.44 reads "
            "differently, hidden_size = heads x head_dim, RoPE scaling types, tokenizer class and "
            "tokenizer.json format; then the tokenizer is loaded on the network's own stack "
            "(transformers 4.44.0 / tokenizers 0.19.1) and the per-sample rule is run on 64 held-out "
            "samples of the embedded corpus (load failures, round-trip failures, a prepended BOS). "
            "Exit status 0 when every model passes, 1 when one has an error."
        ),
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="checkpoint directory or org/name[@revision]")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument(
        "--static-only",
        action="store_true",
        help="only the file rules: do not load the tokenizer on the network's stack",
    )
    p.set_defaults(func=run)


def _folder(spec: str):
    from sn29_growth.checkpoint import CONFIG_FILE, TOKENIZER_FILES
    from sn29_growth.cliutil import hub_files, model_argument

    ref = model_argument("MODEL", spec, weights=False, tokenizer=True)
    if ref.path is not None:
        return ref.path
    return hub_files(spec, (CONFIG_FILE, *TOKENIZER_FILES))


def run(args) -> int:
    from sn29_growth.eval.tokenizers import check_on_network
    from sn29_growth.network.rules import check_model

    check = check_model if args.static_only else check_on_network
    folders = [_folder(m) for m in args.models]  # every argument is checked before any work
    results = [check(f) for f in folders]
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print("\n".join(r.format() for r in results))
    return 0 if all(r.ok for r in results) else 1
