"""Shared argparse pieces of the ``sn29`` console script, ``neurons/miner.py`` and ``neurons/validator.py``.

- :class:`ArgumentParser`: every ``--help`` shows each flag's default (:class:`DefaultsHelpFormatter`),
  abbreviated flags are refused rather than guessed, and an unknown or misspelled flag (or sub-command)
  gets ``did you mean --xyz?`` (Python 3.11's argparse has no ``suggest_on_error``).
- :func:`add_deprecated_alias`: an old flag name that still works, hidden from ``--help``, with a warning
  printed once per parse.
- :func:`add_setting`: the flag of one config dataclass field, its default and help read from the field.
- :func:`add_training_arguments` / :func:`train_config_from_args`: the training flags of ``sn29 train``
  and of the miner, from one place (the fields of ``TrainConfig``), so that the two cannot drift apart.
- :func:`model_argument` / :func:`check_model_argument`: every model argument goes through
  :func:`sn29_growth.modelref.resolve_model_argument`, so that each problem reads the same everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------------------- parser


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option's help unless the help already says ``(default``.

    Flags whose default is ``None`` or ``False`` (nothing given, a switch that is off) show nothing: their
    help text says what happens without them where that matters.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or not action.option_strings:
            return text
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return text
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def suggestions(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The closest of ``candidates`` to a misspelled ``word`` (difflib), best first; [] when none is close."""
    pool = sorted(set(candidates))
    if len(word) >= 4:
        prefixed = [c for c in pool if c.startswith(word) and c != word]
        if 0 < len(prefixed) <= n:  # an abbreviation: the flags it abbreviates
            return prefixed
    close = difflib.get_close_matches(word, pool, n=n, cutoff=0.6)
    if not close:
        return []
    best = difflib.SequenceMatcher(None, word, close[0]).ratio()
    return [c for c in close if difflib.SequenceMatcher(None, word, c).ratio() >= best - 0.02]


def _did_you_mean(options: Sequence[str]) -> str:
    return "did you mean " + " or ".join(options) + "?"


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)\s*$", re.DOTALL)


def _looks_like_flag(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with defaults in ``--help``, no abbreviations and "did you mean"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._deprecation_warned: set[str] = set()

    # -- unknown flags ----------------------------------------------------------------------------
    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)  # for the hints of error()
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            target = self._selected_parser(parsed)
            target.error(target.unrecognized_message(extras))
        return parsed

    def _selected_parser(self, namespace: argparse.Namespace) -> ArgumentParser:
        """The innermost sub-command parser the command line selected (``self`` without sub-commands)."""
        parser: argparse.ArgumentParser = self
        while True:
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if not subs or subs[0].dest == argparse.SUPPRESS:
                break
            name = getattr(namespace, subs[0].dest, None)
            chosen = subs[0].choices.get(name) if isinstance(name, str) else None
            if chosen is None:
                break
            parser = chosen
        return parser if isinstance(parser, ArgumentParser) else self

    def visible_options(self) -> list[str]:
        """Every option string shown in ``--help`` (hidden and deprecated names excluded)."""
        return [s for a in self._actions if a.help != argparse.SUPPRESS for s in a.option_strings]

    def _hints(self, tokens: Iterable[str]) -> list[tuple[str, list[str]]]:
        """``(flag, close options)`` for each token that is a flag this parser does not know."""
        hints = []
        options = self.visible_options()
        for token in tokens:
            flag = token.split("=", 1)[0]
            if not _looks_like_flag(token) or flag in self._option_string_actions:
                continue
            close = suggestions(flag, options)
            if close:
                hints.append((flag, close))
        return hints

    @staticmethod
    def _with_hints(message: str, hints: list[tuple[str, list[str]]], name_flags: bool = False) -> str:
        if len(hints) == 1 and not name_flags:
            return f"{message} ({_did_you_mean(hints[0][1])})"
        if hints:
            return f"{message} ({'; '.join(f'{flag}: {_did_you_mean(c)}' for flag, c in hints)})"
        return message

    def unrecognized_message(self, extras: Sequence[str]) -> str:
        return self._with_hints("unrecognized arguments: " + " ".join(extras), self._hints(extras))

    # -- unknown choices (sub-commands included), missing required flags ------------------------------
    def error(self, message: str):  # type: ignore[override]
        m = _INVALID_CHOICE.search(message)
        if m and "did you mean" not in message:
            close = suggestions(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
            if close:
                message = f"{message} ({_did_you_mean(close)})"
        elif message.startswith("the following arguments are required"):
            # a misspelled required flag is reported as missing: name the misspelling too
            message = self._with_hints(message, self._hints(getattr(self, "_argv", ())), name_flags=True)
        super().error(message)


# ------------------------------------------------------------------------------------------- aliases


class _DeprecatedAlias(argparse.Action):
    """Stores into the replacement flag's ``dest``; warns (once per parse) on stderr."""

    def __init__(self, option_strings, dest, *, replacement: str, **kwargs: Any) -> None:
        kwargs["help"] = argparse.SUPPRESS
        kwargs["default"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warned = getattr(parser, "_deprecation_warned", None)
        if warned is None or option_string not in warned:
            if warned is not None:
                warned.add(option_string)
            print(
                f"{parser.prog}: warning: {option_string} is deprecated and will be removed; use {self.replacement}",
                file=sys.stderr,
            )
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Accept ``old`` as a hidden, deprecated name of the existing flag ``new`` (same type, same dest)."""
    target = parser._option_string_actions[new]
    kwargs: dict[str, Any] = {"replacement": new, "metavar": target.metavar}
    if target.nargs == 0:
        kwargs.update(nargs=0, const=target.const)
    else:
        kwargs.update(nargs=target.nargs, type=target.type, choices=target.choices)
    parser.add_argument(old, dest=target.dest, action=_DeprecatedAlias, **kwargs)


# ------------------------------------------------------------------------------------------- units


_COUNT_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_BYTE_UNITS = {"": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_BYTE_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "B": 1})


def _scaled(text: str, units: dict[str, int], what: str) -> int:
    s = text.strip().upper().replace("_", "").replace(",", "")
    num = s.rstrip("KMGTBI")
    unit = s[len(num) :]
    if unit not in units:
        raise argparse.ArgumentTypeError(f"cannot read {what} {text!r}")
    try:
        value = float(num) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read {what} {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
    return int(value)


def parse_count(text: str) -> int:
    """``20.1B``, ``7e9``, ``14000000000`` → an integer count."""
    return _scaled(text, _COUNT_UNITS, "count")


def parse_bytes(text: str) -> int:
    """``42e9``, ``2GB``, ``512MiB`` → bytes."""
    return _scaled(text, _BYTE_UNITS, "size")


# ------------------------------------------------------------------------------------------- training


def field_default(config: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config``."""
    spec = {f.name: f for f in dataclasses.fields(config)}[name]
    return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default


TRAINING_GROUP = (
    "training (the same flags in `sn29 train` and neurons/miner.py; only the defaults of --data and "
    "--eval-every differ, see their help)"
)


def add_setting(
    group: argparse._ActionsContainer, config: type, name: str, *flags: str, **overrides: Any
) -> argparse.Action:
    """Add the flag of field ``name`` of the dataclass ``config`` (declared with
    :func:`sn29_growth.fields.setting`): default, help, metavar and choices come from the field; a bool
    field that defaults to False becomes a switch. ``overrides`` are passed to ``add_argument`` as they are
    (``help_suffix`` is appended to the field's help)."""
    import typing

    spec = {f.name: f for f in dataclasses.fields(config)}.get(name)
    if spec is None:
        raise ValueError(f"{config.__name__} has no field {name!r}")
    kwargs: dict[str, Any] = {"default": spec.default, "help": spec.metadata.get("help") or None}
    if spec.metadata.get("choices"):
        kwargs["choices"] = spec.metadata["choices"]
    if spec.metadata.get("metavar"):
        kwargs["metavar"] = spec.metadata["metavar"]
    kind = typing.get_type_hints(config)[name]
    kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # X | None -> X
    if kind is bool:
        if spec.default is not False:
            raise ValueError(f"{config.__name__}.{name}: a switch must default to False")
        kwargs["action"] = "store_true"
    elif kind in (int, float) and "choices" not in kwargs:
        kwargs["type"] = kind
    suffix = overrides.pop("help_suffix", "")
    kwargs.update(overrides)
    if suffix:
        kwargs["help"] = (kwargs["help"] or "") + suffix
    return group.add_argument(*(flags or (f"--{name.replace('_', '-')}",)), **kwargs)


def add_training_arguments(
    parser: argparse.ArgumentParser, *, tool: str = "train"
) -> argparse._ArgumentGroup:
    """Add the training flags to ``parser`` (``tool``: ``train`` for ``sn29 train``, ``miner``).

    Names, types, defaults and help come from the fields of :class:`~sn29_growth.train.TrainConfig` and
    its parts, the same for both tools; only the flags whose default depends on the tool (``--data``,
    ``--eval-every``: ``None`` in the parser) differ in their help.
    """
    from sn29_growth.train.config import (
        BatchConfig,
        CheckpointConfig,
        OptimizerConfig,
        ScheduleConfig,
        TrainConfig,
    )

    if tool not in ("train", "miner"):
        raise ValueError(f"tool must be 'train' or 'miner', got {tool!r}")
    miner = tool == "miner"
    g = parser.add_argument_group(TRAINING_GROUP)
    add_setting(g, TrainConfig, "steps", help_suffix=" (0 = no training)" if miner else "")
    add_setting(g, OptimizerConfig, "lr", "--lr", "--learning-rate")
    add_setting(g, OptimizerConfig, "weight_decay")
    add_setting(g, OptimizerConfig, "grad_clip")
    add_setting(g, ScheduleConfig, "kind", "--schedule")
    add_setting(g, ScheduleConfig, "warmup_steps", "--warmup")
    for name in ("min_lr_ratio", "new_lr_warmup", "new_only_steps"):
        add_setting(g, ScheduleConfig, name)
    for name in ("batch_size", "seq_len", "grad_accum"):
        add_setting(g, BatchConfig, name)
    for name in ("grad_checkpointing", "compile", "fsdp", "cpu_offload", "dtype", "save_dtype"):
        add_setting(g, TrainConfig, name)
    streamed = (
        "hf://org/name[/config][@split] (a Hub dataset's parquet shards) or a folder of .parquet/.jsonl/.txt "
        "files: tokenized on the network's stack into a prepared folder while training (only the ids the "
        "run needs, reused by later runs and on resume)"
    )
    from sn29_growth.miner.config import ONLINE_TRAIN_DATA

    if miner:
        data_help = (
            f"training data: {streamed}; local (the embedded corpus's train part); fineweb (FineWeb-edu rows "
            "through the datasets-server rows API: small and slow); a folder prepared by `sn29 data` (read "
            f"memory-mapped) or a .txt/.jsonl file (default: {ONLINE_TRAIN_DATA}, what validators score; "
            "offline: local; `sn29 train` defaults to local)"
        )
        eval_help = (
            "held-out validation every STEPS steps, 0 = never (default: at the start and the end only: the "
            "would-it-win check is the evaluation that counts; `sn29 train` validates every "
            f"{field_default(TrainConfig, 'eval_every')} steps)"
        )
    else:
        data_help = (
            f"training data: local (the embedded corpus's train part, the default: it runs anywhere, offline "
            f"too; the miner defaults to {ONLINE_TRAIN_DATA}); {streamed}; a folder prepared by `sn29 data` "
            "(read memory-mapped) or a .txt/.jsonl file"
        )
        eval_help = None  # the field's help, with the field's default
    g.add_argument(
        "--data",
        default=None,
        metavar="hf://…|local|fineweb|FOLDER|FILE" if miner else "local|hf://…|FOLDER|FILE",
        help=data_help,
    )
    eval_every = add_setting(g, TrainConfig, "eval_every", default=None)
    if eval_help is None:
        eval_every.help += f" (default: {field_default(TrainConfig, 'eval_every')})"
    else:
        eval_every.help = eval_help
    add_setting(g, BatchConfig, "eval_windows")
    add_setting(g, CheckpointConfig, "save_every")
    add_setting(g, CheckpointConfig, "keep", "--keep-checkpoints")
    return g


def train_config_from_args(
    args: argparse.Namespace,
    *,
    eval_every: int,
    device: str,
    resume: bool,
    seed: int = 0,
    progress: bool = True,
    stop_after: int | None = None,
    warmup_cap: int | None = None,
):
    """The :class:`~sn29_growth.train.TrainConfig` the training flags describe.

    ``eval_every`` applies when ``--eval-every`` was not given; ``warmup_cap`` caps ``--warmup``.
    """
    from sn29_growth.train.config import (
        BatchConfig,
        CheckpointConfig,
        OptimizerConfig,
        ScheduleConfig,
        TrainConfig,
    )

    warmup = args.warmup if warmup_cap is None else min(args.warmup, warmup_cap)
    return TrainConfig(
        steps=args.steps,
        stop_after=stop_after,
        eval_every=args.eval_every if args.eval_every is not None else eval_every,
        optimizer=OptimizerConfig(lr=args.lr, weight_decay=args.weight_decay, grad_clip=args.grad_clip),
        schedule=ScheduleConfig(
            kind=args.schedule,
            warmup_steps=warmup,
            min_lr_ratio=args.min_lr_ratio,
            new_lr_warmup=args.new_lr_warmup,
            new_only_steps=args.new_only_steps,
        ),
        batch=BatchConfig(
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            grad_accum=args.grad_accum,
            eval_windows=args.eval_windows,
        ),
        checkpoint=CheckpointConfig(save_every=args.save_every, keep=args.keep_checkpoints, resume=resume),
        device=device,
        dtype=args.dtype,
        save_dtype=args.save_dtype,
        grad_checkpointing=args.grad_checkpointing,
        compile=args.compile,
        fsdp=args.fsdp,
        cpu_offload=args.cpu_offload,
        seed=seed,
        progress=progress,
    )


# ------------------------------------------------------------------------------------------- models


def looks_like_local_path(spec: str) -> bool:
    """Whether a model argument is meant as a local path rather than ``namespace/name[@revision]``.

    True when it starts with ``./``, ``../``, ``/`` or ``~`` (or is ``.``/``..``), holds a path separator
    beyond the one ``namespace/name`` slash, or exists on disk.
    """
    if spec in (".", "..") or spec.startswith(("./", "../", "/", "~")):
        return True
    if os.sep != "/" and (spec.startswith((f".{os.sep}", f"..{os.sep}", os.sep))):
        return True
    name = spec.split("@", 1)[0]  # a revision (branch name) may itself hold slashes
    if name.count("/") > 1 or (os.sep != "/" and os.sep in name):
        return True
    return Path(spec).expanduser().exists()


def model_argument(flag: str, spec: str, **need: bool):
    """:func:`sn29_growth.modelref.resolve_model_argument`: the one resolver of every model argument."""
    from sn29_growth.modelref import resolve_model_argument

    return resolve_model_argument(spec, flag, **need)


def check_model_argument(flag: str, spec: str | None, **need: bool) -> None:
    """Refuse a model argument that names no usable model (``None``: nothing given, nothing to check)."""
    if spec is not None:
        model_argument(flag, spec, **need)


def hub_files(spec: str, patterns: Sequence[str]) -> Path:
    """Only the files matching ``patterns`` of the Hub model ``namespace/name[@revision]``, fetched into the
    Hugging Face cache (``HF_HUB_OFFLINE`` or no network: the Hub client's error)."""
    from sn29_growth.modelref import ModelRef

    ref = ModelRef.hub(spec)
    return offline_as_argument_error(spec, lambda: _hub_download(ref, patterns))


def _hub_download(ref, patterns: Sequence[str]) -> Path:
    from huggingface_hub import constants

    from sn29_growth.hub.hf_client import HfHubClient

    hub = HfHubClient()
    commit = hub.resolve_revision(ref.repo_id, ref.revision)
    return Path(
        hub.download(
            ref.repo_id, commit, cache_dir=Path(constants.HF_HUB_CACHE), allow_patterns=list(patterns)
        )
    )


def offline_as_argument_error(spec: str, fetch, flag: str = "MODEL"):
    """``fetch()``, with the Hub's offline refusal reported as the model argument's problem."""
    from sn29_growth.hub.protocol import HubOffline
    from sn29_growth.modelref import HUB_OFFLINE, ModelArgumentError

    try:
        return fetch()
    except HubOffline:
        raise ModelArgumentError(f"{flag} {spec}: {HUB_OFFLINE}") from None
