"""The ``sn29`` console script: one subcommand per module in :mod:`sn29_growth.commands`.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func``; the
function parses nothing itself and calls the library. Every parser is a :class:`sn29_growth.cliutil.ArgumentParser`:
``--help`` shows defaults, and a misspelled flag or command gets "did you mean ...?".
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

from sn29_growth import __version__
from sn29_growth.cliutil import ArgumentParser
from sn29_growth.hub.protocol import HubError
from sn29_growth.logs import setup_logging

COMMANDS = (
    "demo",
    "params",
    "convert",
    "check",
    "evaluate",
    "data",
    "train",
    "grow",
    "plan",
    "init",
    "study",
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="sn29", description="SN29 growth toolkit: grow, train, evaluate, score.")
    parser.add_argument("--version", action="version", version=f"sn29-growth {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="`sn29 COMMAND --help` for its flags"
    )
    for name in COMMANDS:
        importlib.import_module(f"sn29_growth.commands.{name}").register(sub)
    return parser


def quiet_transformers_progress() -> None:
    """Our commands show their own progress; transformers' per-load weight bars are noise there."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def resume_hint(error: Exception, args: argparse.Namespace, argv: list[str]) -> str:
    """The line a paused ``sn29 train`` prints: the command that resumes it, ``--resume`` added when it was
    not given (under torchrun, the library's line: the launch command is torchrun's)."""
    if args.command != "train" or getattr(args, "resume", True) or "TORCHELASTIC_RUN_ID" in os.environ:
        return str(error)
    return f"interrupted at step {error.step}; resume with: sn29 {shlex.join([*argv, '--resume'])}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    quiet_transformers_progress()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError, HubError) as e:
        if type(e).__name__ == "TrainingInterrupted":  # a pause, not an error (no torch import here)
            if os.environ.get("RANK", "0") == "0":  # one line under torchrun, not one per rank
                print(resume_hint(e, args, argv), file=sys.stderr)
            return 130
        print(f"sn29 {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
