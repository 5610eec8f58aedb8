"""Every ``--help`` an operator can reach (each ``sn29`` command, ``neurons/miner.py``,
``neurons/validator.py``) describes every flag and argument; ``sn29`` alone prints the command list."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from sn29_growth.cli import COMMANDS
from sn29_growth.cli import build_parser as sn29_parser
from sn29_growth.cli import main as sn29
from sn29_growth.miner.cli import build_parser as miner_parser
from sn29_growth.validator.cli import build_parser as validator_parser

ROOT = Path(__file__).resolve().parents[1]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _parsers() -> dict[str, argparse.ArgumentParser]:
    top = sn29_parser()
    found = {"sn29": top, "neurons/miner.py": miner_parser(), "neurons/validator.py": validator_parser()}
    for name, parser in _subcommands(top).choices.items():
        found[f"sn29 {name}"] = parser
    return found


@pytest.mark.parametrize("name", list(_parsers()))
def test_every_flag_and_argument_has_help_text(name):
    parser = _parsers()[name]
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if a.help != argparse.SUPPRESS and not (a.help or "").strip()
    ]
    assert not missing, f"{name}: no help text for {missing}"
    parser.format_help()  # every help string formats (a stray % would raise here)


def test_every_subcommand_has_a_one_line_description():
    sub = _subcommands(sn29_parser())
    described = {a.dest: a.help for a in sub._choices_actions}
    assert sorted(described) == sorted(COMMANDS)
    for name, text in described.items():
        assert text and "\n" not in text, name


def test_sn29_alone_prints_the_command_list(capsys):
    assert sn29([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name}" in out


def test_validator_help_shows_each_default():
    text = validator_parser().format_help()
    for fragment in (
        "subnet id (default: 29)",
        "(default: 175)",
        "(default: 1000)",
        "(default: no cap)",
        "(default: finney)",
        "coldkey wallet name (default: default)",
    ):
        assert fragment in " ".join(text.split()), fragment


@pytest.mark.parametrize("script", ["neurons/miner.py", "neurons/validator.py"])
def test_neuron_scripts_print_their_help(script):
    done = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--model-dir" in done.stdout
