"""Flags of ``neurons/miner.py`` (bittensor conventions, the validator's names where the meaning is the
same, ``sn29 train``'s training flags) → a :class:`MinerConfig` and real clients → :func:`run_miner`.

Online: the bittensor chain (the wallet's hotkey signs the commitment) and the Hugging Face Hub
(``HF_TOKEN`` or the stored token). ``--offline``: a local Hub directory (``--local-hub``) and a chain
kept in a JSON file (``--offline-chain``); no network at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from sn29_growth.cliutil import (
    ArgumentParser,
    add_deprecated_alias,
    add_setting,
    add_training_arguments,
    check_model_argument,
)
from sn29_growth.cliutil import train_config_from_args as training_config
from sn29_growth.logs import setup_logging
from sn29_growth.miner.config import ONLINE_TRAIN_DATA, MinerConfig
from sn29_growth.miner.run import MinerClients, run_miner

log = logging.getLogger("sn29_growth.miner")

DEFAULT_MODEL_DIR = "~/.cache/sn29-growth/miner"
DEPRECATED_FLAGS = {"--train-steps": "--steps", "--train-data": "--data"}
"""Old miner flag names (hidden, still accepted with a warning) → the names ``sn29 train`` uses."""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="neurons/miner.py",
        description="SN29 miner: grow the competition's best model within its limits, train it, check that it "
        "would win, upload it privately, commit it on chain, then make it public. The training flags are "
        "those of `sn29 train`.",
    )
    chain = p.add_argument_group("chain")
    chain.add_argument("--netuid", type=int, default=29, metavar="N", help="subnet id")
    chain.add_argument(
        "--subtensor.network", dest="network", default="finney", help="finney | test | local | ws://host:port"
    )
    chain.add_argument("--wallet.name", dest="wallet_name", default="default", help="coldkey wallet name")
    chain.add_argument("--wallet.hotkey", dest="wallet_hotkey", default="default", help="hotkey name")
    chain.add_argument(
        "--wallet.path", dest="wallet_path", default="~/.bittensor/wallets", help="wallets folder"
    )
    model = p.add_argument_group("model")
    add_setting(model, MinerConfig, "competition")
    model.add_argument(
        "--competitions",
        default=None,
        metavar="FILE|URL",
        help="competitions.json URL or file (default: the packaged copy)",
    )
    model.add_argument("--hf-repo", required=True, metavar="ORG/NAME", help="Hub repository to publish to")
    model.add_argument(
        "--base",
        default=None,
        metavar="ORG/NAME[@REV]|DIR",
        help="model to grow (default: the competition's current best on chain)",
    )
    add_setting(model, MinerConfig, "grow")
    add_setting(model, MinerConfig, "grow_seed")
    model.add_argument(
        "--model-dir",
        type=Path,
        default=Path(DEFAULT_MODEL_DIR),
        metavar="DIR",
        help="downloads, runs and the miner state",
    )
    tr = add_training_arguments(p, tool="miner")
    add_setting(tr, MinerConfig, "train_procs")
    add_setting(tr, MinerConfig, "train_samples")
    for old, new in DEPRECATED_FLAGS.items():
        add_deprecated_alias(p, old, new)
    ev = p.add_argument_group("would it win (the validator's evaluation and scoring)")
    ev.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    ev.add_argument(
        "--dataset",
        default=None,
        metavar="fineweb|local|PATH",
        help="evaluation samples (default: fineweb; offline: local)",
    )
    add_setting(ev, MinerConfig, "samples")
    add_setting(ev, MinerConfig, "seed")
    add_setting(ev, MinerConfig, "min_win_rate")
    up = p.add_argument_group("upload")
    up.add_argument("--force-upload", action="store_true", help="upload and commit even if it would not win")
    up.add_argument("--no-upload", action="store_true", help="stop after the verdict (dry run)")
    run = p.add_argument_group("running")
    run.add_argument(
        "--offline", action="store_true", help="no chain, no Hub: --local-hub and --offline-chain"
    )
    run.add_argument(
        "--local-hub",
        type=Path,
        default=None,
        metavar="DIR",
        help="local Hub directory (default: MODEL_DIR/local-hub)",
    )
    run.add_argument(
        "--offline-chain",
        type=Path,
        default=None,
        metavar="FILE",
        help="offline chain file (default: MODEL_DIR/offline-chain.json)",
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _device(arg: str | None) -> str:
    if arg:
        return arg
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train_config_from_args(args: argparse.Namespace, device: str):
    """The training run the flags describe (``None`` for ``--steps 0``): the same mapping as ``sn29 train``;
    validated at the start and the end unless ``--eval-every`` says otherwise, always resumed."""
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    if args.steps == 0:
        return None
    return training_config(
        args,
        eval_every=args.steps,
        device="cuda" if device.startswith("cuda") else "cpu",
        resume=True,
        progress=False,
        warmup_cap=args.steps,
    )


def config_from_args(args: argparse.Namespace) -> MinerConfig:
    if args.force_upload and args.no_upload:
        raise ValueError("--force-upload and --no-upload contradict each other")
    check_model_argument("--base", args.base, tokenizer=True, offline=False if args.offline else None)
    device = _device(args.device)
    return MinerConfig(
        work_dir=args.model_dir.expanduser(),
        competition=args.competition,
        hf_repo=args.hf_repo,
        base=args.base,
        grow=args.grow,
        grow_seed=args.grow_seed,
        train=train_config_from_args(args, device),
        train_data=args.data or ("local" if args.offline else ONLINE_TRAIN_DATA),
        train_samples=args.train_samples,
        train_procs=args.train_procs,
        dataset=args.dataset or ("local" if args.offline else "fineweb"),
        samples=args.samples,
        seed=args.seed,
        device=device,
        min_win_rate=args.min_win_rate,
        upload="always" if args.force_upload else "never" if args.no_upload else "if-wins",
    )


def _wallet(args: argparse.Namespace):
    import bittensor as bt

    return bt.Wallet(
        name=args.wallet_name, hotkey=args.wallet_hotkey, path=str(Path(args.wallet_path).expanduser())
    )


def build_clients(config: MinerConfig, args: argparse.Namespace) -> MinerClients:
    if args.offline:
        from sn29_growth.miner.offline import offline_clients

        return offline_clients(
            config.work_dir,
            local_hub=args.local_hub,
            chain_file=args.offline_chain,
            competitions=args.competitions,
            hotkey=_offline_hotkey(args),
        )

    from sn29_growth.chain.bittensor_client import BittensorChainClient
    from sn29_growth.eval.competitions import CompetitionsSource
    from sn29_growth.hub.hf_client import HfHubClient

    chain = BittensorChainClient(args.netuid, _wallet(args), network=args.network)
    return MinerClients(
        chain=chain,
        hub=HfHubClient(),
        hotkey=chain.hotkey,
        competitions=CompetitionsSource(args.competitions, strict=True),
    )


def _offline_hotkey(args: argparse.Namespace) -> str | None:
    """The wallet's hotkey address when that wallet exists on disk (offline runs never need it)."""
    try:
        wallet = _wallet(args)
        return wallet.hotkeypub.ss58_address
    except Exception:  # no such wallet: the offline development key is used
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from sn29_growth.chain.protocol import ChainClientError
    from sn29_growth.hub.protocol import HubError

    try:
        config = config_from_args(args)
        clients = build_clients(config, args)
        report = run_miner(config, clients)
    except (ValueError, OSError, RuntimeError, HubError, ChainClientError) as e:
        if type(e).__name__ == "TrainingInterrupted":  # a pause: rerunning the command resumes
            print(e, file=sys.stderr)
            return 130
        print(f"miner: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format(), flush=True)
    if report.status == "interrupted":
        return 130
    if report.status == "not-network-compatible":
        return 2
    return 0 if report.status in ("published", "dry-run") else 1
