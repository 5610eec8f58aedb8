"""``sn29 plan SRC --competition c00 | --max-params N``: GPU-friendly growth shapes that fill a limit.

With ``--competition`` the limits are the competition's, exactly as the miner computes them
(:func:`sn29_growth.miner.grow.parameter_limit`: ``parameters``, and ``model_size`` bytes less a 1 % header
margin and the source's config/tokenizer files, at the checkpoint's dtype). Every option says which limit
binds it, or why it stops short of the limit (the planner's 4x caps), and comes with the ``sn29 grow``
command that produces it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sn29_growth.cliutil import parse_bytes, parse_count

NO_LIMIT = 10**30  # stands in for "no parameter limit" to isolate a competition's byte limit


def register(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="propose growth shapes that use as much of a competition's (or a given) limit as possible",
        description="Growth options for SRC within a limit: a competition's parameters and model_size (as the "
        "miner applies them: --competition), and/or --max-params / --max-bytes; the smallest limit binds. "
        "Each option shows its parameters, bytes, which limit binds it (or why it stops short: the "
        "planner grows width and depth at most 4x and keeps the MLP within 4x the source's MLP/hidden ratio), "
        "and the `sn29 grow` command that produces it.",
    )
    p.add_argument(
        "src",
        metavar="SRC",
        help="checkpoint directory, config.json, or Hub repo id namespace/name[@revision] (only its config "
        "and tokenizer files are fetched)",
    )
    lim = p.add_argument_group("limits (any combination; the smallest binds)")
    lim.add_argument(
        "--competition",
        metavar="ID",
        default=None,
        help="the limits of this competition (e.g. c00): parameters, and model_size bytes less the miner's "
        "margin (1%% for safetensors headers, and the config/tokenizer files)",
    )
    lim.add_argument(
        "--competitions",
        metavar="FILE|URL",
        default=None,
        help="competitions.json for --competition (default: the packaged copy)",
    )
    lim.add_argument("--max-params", type=parse_count, metavar="N", help="parameter limit, e.g. 20.1B")
    lim.add_argument(
        "--max-bytes",
        type=parse_bytes,
        metavar="BYTES",
        help="byte limit of the weights (no margin), e.g. 42e9",
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="dtype of the grown weights (default: the source's; when it declares none, float32 with "
        "--competition, as the miner assumes, else bfloat16)",
    )
    p.add_argument(
        "--hidden-method", choices=("divisor", "stock", "clone"), default="divisor", help="sn29 grow's method"
    )
    p.add_argument(
        "--dst",
        default="grown-{option}",
        metavar="DIR",
        help="DST of the printed sn29 grow commands ({option} is replaced by the option's name)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON document (the same content)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------- source


@dataclasses.dataclass(frozen=True)
class Source:
    spec: str
    config: dict[str, Any]
    config_file: Path | None  # the config read, when it is a file outside a checkpoint folder
    folder: Path | None  # a folder with config.json (and tokenizer files), when there is one


def read_source(src: str) -> Source:
    """The config of SRC and the folder holding its files; a Hub model fetches config and tokenizer only."""
    from sn29_growth.checkpoint import (
        CONFIG_FILE,
        GENERATION_CONFIG_FILE,
        TOKENIZER_FILES,
        read_json_object,
        read_model_config,
    )
    from sn29_growth.cliutil import hub_files, model_argument

    ref = model_argument("SRC", src, weights=False, config_file=True)
    p = ref.path.expanduser() if ref.path is not None else None
    if p is not None and p.is_file():
        if p.name == CONFIG_FILE:
            return Source(src, read_model_config(p.parent), None, p.parent)
        return Source(src, read_json_object(p), p, None)
    if p is not None:
        return Source(src, read_model_config(p), None, p)
    folder = hub_files(src, (CONFIG_FILE, GENERATION_CONFIG_FILE, *TOKENIZER_FILES))
    return Source(src, read_model_config(folder), None, folder)


@contextlib.contextmanager
def limit_folder(source: Source) -> Iterator[Path]:
    """A folder the miner's :func:`parameter_limit` accepts, with the non-weight files of SRC: SRC itself
    when it is a checkpoint, else a temporary copy of its config (and tokenizer) files beside an empty
    weights placeholder (weights never count as "other files")."""
    from sn29_growth.checkpoint import CONFIG_FILE
    from sn29_growth.hub.policy import select_upload

    folder = source.folder
    if folder is not None and any(folder.glob("*.safetensors")) and (folder / CONFIG_FILE).is_file():
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="sn29-plan-") as tmp:
        work = Path(tmp)
        if folder is not None:
            names = select_upload(n.name for n in folder.iterdir() if n.is_file())
            for name in names:
                if not name.endswith(".safetensors"):
                    shutil.copyfile(folder / name, work / name)
        else:
            assert source.config_file is not None
            shutil.copyfile(source.config_file, work / CONFIG_FILE)
        (work / "model.safetensors").write_bytes(b"")
        yield work


def other_files(folder: Path) -> dict[str, int]:
    """The non-weight files an upload of ``folder`` sends, with their sizes (shown beside the limit)."""
    from sn29_growth.hub.policy import upload_paths

    return {n: (folder / n).stat().st_size for n in upload_paths(folder) if not n.endswith(".safetensors")}


# ------------------------------------------------------------------------------------------- limits


@dataclasses.dataclass(frozen=True)
class Limit:
    name: str  # parameters | model_size | --max-params | --max-bytes
    parameters: int  # the most parameters this limit allows
    detail: str
    bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def competition_limits(competition, folder: Path, dtype: str) -> tuple[list[Limit], dict[str, int]]:
    """The competition's two limits in parameters, each exactly as the miner computes it."""
    from sn29_growth.miner.grow import BYTES_PER_DTYPE, HEADER_MARGIN, parameter_limit

    by_bytes = parameter_limit(dataclasses.replace(competition, parameters=NO_LIMIT), folder, dtype)
    both = parameter_limit(competition, folder, dtype)
    assert both == min(competition.parameters, by_bytes)
    files = other_files(folder)
    size = competition.model_size
    bpp = BYTES_PER_DTYPE[dtype]
    return [
        Limit("parameters", competition.parameters, f"{competition.name} parameters"),
        Limit(
            "model_size",
            by_bytes,
            f"{competition.name} model_size {size:,} bytes - {HEADER_MARGIN:.0%} header margin - "
            f"{sum(files.values()):,} bytes of {len(files)} config/tokenizer file(s), at {bpp} bytes per "
            f"parameter ({dtype})",
            size,
        ),
    ], files


def load_competition(name: str, location: str | None):
    from sn29_growth.eval.competitions import default_competitions, load_competitions

    competitions = load_competitions(location) if location else default_competitions()
    if name not in competitions:
        where = location or "the packaged competitions.json"
        raise ValueError(
            f"--competition {name}: not in {where} (it has: {', '.join(sorted(competitions)) or 'none'})"
        )
    return competitions[name]


# ------------------------------------------------------------------------------------------- options


def stop_reasons(src, option, limit: int) -> list[str]:
    """Why ``option`` is not closer to ``limit``: [] when the limit binds (one more MLP step would exceed
    it), else the planner caps it reached."""
    from sn29_growth.growth.fit import MAX_FACTOR, MAX_MLP_RATIO, MLP_STEP, WIDTH_STEP, count_params

    s = option.shape
    if count_params(s.replace(intermediate_size=s.intermediate_size + MLP_STEP)) > limit:
        return []
    reasons = []
    if s.num_hidden_layers + 1 > int(src.num_hidden_layers * MAX_FACTOR):
        reasons.append(f"{s.num_hidden_layers} layers: the {MAX_FACTOR:g}x depth cap (MAX_FACTOR)")
    if s.hidden_size + WIDTH_STEP > src.hidden_size * MAX_FACTOR and s.hidden_size > src.hidden_size:
        reasons.append(f"hidden {s.hidden_size}: the {MAX_FACTOR:g}x width cap (MAX_FACTOR)")
    ratio = src.intermediate_size / src.hidden_size
    if s.intermediate_size + MLP_STEP > int(s.hidden_size * ratio * MAX_MLP_RATIO):
        reasons.append(
            f"MLP {s.intermediate_size}: the cap of {MAX_MLP_RATIO:g}x the source's MLP/hidden ratio "
            f"(MAX_MLP_RATIO)"
        )
    kept = {"wider": "depth kept", "deeper": "width kept", "mlp": "width and depth kept"}.get(option.name)
    if kept:
        reasons.append(f"{option.name}: {kept}")
    return reasons or ["the planner's balance of width, depth and MLP"]


def grow_argv(src: str, dst: str, source_shape, option, hidden_method: str, dtype: str | None) -> list[str]:
    """``sn29 grow SRC DST`` with the target flags that turn the source's shape into ``option``'s."""
    from sn29_growth.commands.grow import TARGET_FLAGS

    targets = option.targets()
    argv = ["sn29", "grow", src, dst]
    for flag, dest in TARGET_FLAGS:
        if dest in targets and targets[dest] != getattr(source_shape, dest):
            argv += [flag, str(targets[dest])]
    if hidden_method != "divisor":
        argv += ["--hidden-method", hidden_method]
    if dtype:
        argv += ["--dtype", dtype]
    return argv


def run(args) -> int:
    from sn29_growth.arch import Shape
    from sn29_growth.checkpoint import BYTES_PER_DTYPE, checkpoint_dtype, declared_dtype
    from sn29_growth.growth.fit import effective_limit, plan_options
    from sn29_growth.growth.spec import normalize_dtype

    if args.competition is None and args.max_params is None and args.max_bytes is None:
        raise ValueError("give --competition ID, --max-params N and/or --max-bytes BYTES")
    if args.competitions and args.competition is None:
        raise ValueError("--competitions needs --competition ID")
    source = read_source(args.src)
    config = source.config
    src_dtype = declared_dtype(config)
    if args.dtype:
        dtype = normalize_dtype(args.dtype)
    elif args.competition is not None:
        dtype = checkpoint_dtype(config)  # what the miner assumes
    else:
        dtype = src_dtype or "bfloat16"
    bpp = BYTES_PER_DTYPE[dtype]
    shape = Shape.from_config(config)

    limits: list[Limit] = []
    files: dict[str, int] = {}
    competition = None
    if args.competition is not None:
        competition = load_competition(args.competition, args.competitions)
        with limit_folder(source) as folder:
            comp_limits, files = competition_limits(competition, folder, dtype)
        limits += comp_limits
    if args.max_params is not None:
        limits.append(Limit("--max-params", effective_limit(args.max_params, None, bpp), "--max-params"))
    if args.max_bytes is not None:
        limits.append(
            Limit(
                "--max-bytes",
                effective_limit(None, args.max_bytes, bpp),
                f"--max-bytes {args.max_bytes:,} at {bpp} bytes per parameter ({dtype})",
                args.max_bytes,
            )
        )
    limit = min(x.parameters for x in limits)
    binding = [x.name for x in limits if x.parameters == limit]
    other_bytes = sum(files.values())

    options = plan_options(shape, limit, clone_only=args.hidden_method == "clone")
    grow_dtype = dtype if dtype != src_dtype and (args.dtype or src_dtype) else None
    rows = []
    for o in options:
        reasons = stop_reasons(shape, o, limit)
        dst = args.dst.replace("{option}", o.name)
        argv = grow_argv(args.src, dst, shape, o, args.hidden_method, grow_dtype)
        rows.append(
            dict(
                o.to_dict(),
                query_heads=o.shape.num_attention_heads,
                kv_heads=o.shape.num_key_value_heads,
                weight_bytes=o.parameters * bpp,
                bytes=o.parameters * bpp + other_bytes,
                bound_by=binding if not reasons else None,
                stops_short=reasons,
                grows=o.shape != shape,
                command=shlex.join(argv),
                argv=argv,
            )
        )
    growing = [r for r in rows if r["grows"]]
    recommended = growing[0] if growing else None
    if args.json:
        doc = _json_document(
            args, shape, src_dtype, files, competition, dtype, limits, limit, binding, recommended, rows
        )
        print(json.dumps(doc, indent=2))
        return 0 if recommended else 1
    _print_human(args, shape, dtype, limits, limit, binding, rows, recommended, competition)
    return 0 if recommended else 1


def _json_document(
    args, shape, src_dtype, files, competition, dtype, limits, limit, binding, recommended, rows
) -> dict:
    """What ``sn29 plan --json`` prints: the source, the competition, the limits and every option."""
    from sn29_growth.growth.fit import count_params

    return {
        "source": {
            "config": args.src,
            "parameters": count_params(shape),
            "dtype": src_dtype,
            "hidden_size": shape.hidden_size,
            "query_heads": shape.num_attention_heads,
            "kv_heads": shape.num_key_value_heads,
            "head_dim": shape.head_dim,
            "intermediate_size": shape.intermediate_size,
            "num_hidden_layers": shape.num_hidden_layers,
            "other_files": files,
        },
        "competition": (
            {
                "name": competition.name,
                "origin": args.competitions or "package",
                "parameters": competition.parameters,
                "model_size": competition.model_size,
            }
            if competition
            else None
        ),
        "dtype": dtype,
        "limits": [x.to_dict() for x in limits],
        "limit": limit,
        "binding": binding,
        "recommended": recommended,
        "options": rows,
    }


def _print_human(args, shape, dtype, limits, limit, binding, rows, recommended, competition) -> None:
    from sn29_growth.growth.fit import count_params

    print(
        f"source: {args.src} ({shape.model_type}): {count_params(shape):,} parameters; hidden "
        f"{shape.hidden_size}, {shape.num_attention_heads} query heads / {shape.num_key_value_heads} kv heads "
        f"(head_dim {shape.head_dim}), MLP {shape.intermediate_size}, {shape.num_hidden_layers} layers"
    )
    origin = f" from {args.competitions}" if args.competitions else ""
    print(f"limits{f' of {competition.name}{origin}' if competition else ''} (grown weights in {dtype}):")
    for x in limits:
        mark = "  <- binds" if x.name in binding else ""
        print(f"  {x.name:<12} {x.parameters:>18,} parameters  ({x.detail}){mark}")
    head = (
        f"{'option':<10} {'hidden':>7} {'q heads':>7} {'kv heads':>8} {'MLP':>7} {'layers':>6} "
        f"{'parameters':>16} {'bytes':>17} {'usage':>7}  bound by"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        mark = " *" if r is recommended else ""
        bound = ", ".join(r["bound_by"]) if r["bound_by"] else "caps (below)"
        if not r["grows"]:
            bound = "no growth"
        print(
            f"{r['name']:<10} {r['hidden_size']:>7} {r['query_heads']:>7} {r['kv_heads']:>8} "
            f"{r['intermediate_size']:>7} {r['num_hidden_layers']:>6} {r['parameters']:>16,} "
            f"{r['bytes']:>17,} {r['usage']:>7.2%}  {bound}{mark}"
        )
    short = [r for r in rows if r["stops_short"] and r["grows"]]
    if short:
        print("stops short of the limit:")
        for r in short:
            print(f"  {r['name']:<10} {'; '.join(r['stops_short'])}")
    if rows:
        print("commands:")
        for r in rows:
            if r["grows"]:
                print(f"  {r['name']:<10} {r['command']}")
    if recommended:
        who = " (the miner's --grow auto takes this one)" if competition else ""
        print(f"* recommended{who}")
    else:
        print(f"no growth of the source fits the limit of {limit:,} parameters")
