"""Flags of ``neurons/miner.py`` (bittensor conventions, the validator's names where the meaning is the
same) → a :class:`MinerConfig` and real clients → :func:`run_miner`.

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

from sn29_growth.logs import setup_logging
from sn29_growth.miner.config import MinerConfig
from sn29_growth.miner.run import MinerClients, run_miner

log = logging.getLogger("sn29_growth.miner")

DEFAULT_MODEL_DIR = "~/.cache/sn29-growth/miner"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neurons/miner.py",
        description="SN29 miner: grow the competition's best model within its limits, train it, check that it "
        "would win, upload it privately, commit it on chain, then make it public.",
    )
    chain = p.add_argument_group("chain")
    chain.add_argument("--netuid", type=int, default=29)
    chain.add_argument(
        "--subtensor.network", dest="network", default="finney", help="finney | test | local | ws://host:port"
    )
    chain.add_argument("--wallet.name", dest="wallet_name", default="default")
    chain.add_argument("--wallet.hotkey", dest="wallet_hotkey", default="default")
    chain.add_argument("--wallet.path", dest="wallet_path", default="~/.bittensor/wallets")
    model = p.add_argument_group("model")
    model.add_argument("--competition", default="c00", help="competition id (default c00)")
    model.add_argument(
        "--competitions", default=None, help="competitions.json URL or file (default: packaged copy)"
    )
    model.add_argument("--hf-repo", required=True, metavar="ORG/NAME", help="Hub repository to publish to")
    model.add_argument(
        "--base",
        default=None,
        metavar="ORG/NAME[@REV]|DIR",
        help="model to grow (default: the competition's current best on chain)",
    )
    model.add_argument(
        "--grow",
        default="auto",
        metavar="auto|none|RECIPE",
        help="auto: the planner's shape within the limits; none: no growth; or a recipe file",
    )
    model.add_argument("--grow-seed", type=int, default=0)
    model.add_argument(
        "--model-dir",
        type=Path,
        default=Path(DEFAULT_MODEL_DIR),
        help=f"downloads, runs and the miner state (default {DEFAULT_MODEL_DIR})",
    )
    tr = p.add_argument_group("training (sn29 train)")
    tr.add_argument(
        "--train-steps", type=int, default=100, metavar="N", help="optimizer steps (0 = no training)"
    )
    tr.add_argument("--lr", type=float, default=3e-4)
    tr.add_argument("--warmup", type=int, default=10, metavar="STEPS")
    tr.add_argument("--batch-size", type=int, default=8)
    tr.add_argument("--seq-len", type=int, default=256)
    tr.add_argument("--grad-accum", type=int, default=1)
    tr.add_argument(
        "--train-data",
        default=None,
        metavar="local|fineweb|FILE",
        help="training texts (default: fineweb; offline: local)",
    )
    tr.add_argument(
        "--train-procs",
        type=int,
        default=1,
        metavar="N",
        help="processes (GPUs) for training: >1 runs torchrun with FSDP2",
    )
    tr.add_argument(
        "--train-samples", type=int, default=2000, metavar="N", help="FineWeb-edu texts per epoch (fineweb)"
    )
    tr.add_argument("--save-every", type=int, default=100, metavar="N", help="checkpoint every N steps")
    tr.add_argument(
        "--eval-every",
        type=int,
        default=None,
        metavar="N",
        help="held-out validation every N steps (default: at the start and the end)",
    )
    tr.add_argument("--save-dtype", choices=("source", "float32", "bfloat16", "float16"), default="source")
    ev = p.add_argument_group("would it win (the validator's evaluation and scoring)")
    ev.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available)")
    ev.add_argument(
        "--dataset", default=None, help="fineweb | local | PATH (default: fineweb; offline: local)"
    )
    ev.add_argument("--samples", type=int, default=None, help="samples (default: the competition's)")
    ev.add_argument("--seed", type=int, default=0, help="sample seed")
    ev.add_argument("--min-win-rate", type=float, default=0.5, help="win rate needed to upload (default 0.5)")
    up = p.add_argument_group("upload")
    up.add_argument("--force-upload", action="store_true", help="upload and commit even if it would not win")
    up.add_argument("--no-upload", action="store_true", help="stop after the verdict (dry run)")
    run = p.add_argument_group("running")
    run.add_argument(
        "--offline", action="store_true", help="no chain, no Hub: --local-hub and --offline-chain"
    )
    run.add_argument(
        "--local-hub", type=Path, default=None, help="local Hub directory (default MODEL_DIR/local-hub)"
    )
    run.add_argument(
        "--offline-chain",
        type=Path,
        default=None,
        help="offline chain file (default MODEL_DIR/offline-chain.json)",
    )
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("-v", "--verbose", action="store_true")
    return p


def _device(arg: str | None) -> str:
    if arg:
        return arg
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train_config_from_args(args: argparse.Namespace, device: str):
    from sn29_growth.train.config import (
        BatchConfig,
        CheckpointConfig,
        OptimizerConfig,
        ScheduleConfig,
        TrainConfig,
    )

    if args.train_steps < 0:
        raise ValueError(f"--train-steps must be >= 0, got {args.train_steps}")
    if args.train_steps == 0:
        return None
    return TrainConfig(
        steps=args.train_steps,
        eval_every=args.eval_every if args.eval_every is not None else args.train_steps,
        optimizer=OptimizerConfig(lr=args.lr),
        schedule=ScheduleConfig(warmup_steps=min(args.warmup, args.train_steps)),
        batch=BatchConfig(batch_size=args.batch_size, seq_len=args.seq_len, grad_accum=args.grad_accum),
        checkpoint=CheckpointConfig(save_every=args.save_every, resume=True),
        device="cuda" if device.startswith("cuda") else "cpu",
        save_dtype=args.save_dtype,
        progress=False,
    )


def config_from_args(args: argparse.Namespace) -> MinerConfig:
    if args.force_upload and args.no_upload:
        raise ValueError("--force-upload and --no-upload contradict each other")
    device = _device(args.device)
    return MinerConfig(
        work_dir=args.model_dir.expanduser(),
        competition=args.competition,
        hf_repo=args.hf_repo,
        base=args.base,
        grow=args.grow,
        grow_seed=args.grow_seed,
        train=train_config_from_args(args, device),
        train_data=args.train_data or ("local" if args.offline else "fineweb"),
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
        print(f"miner: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format(), flush=True)
    if report.status == "not-network-compatible":
        return 2
    return 0 if report.status in ("published", "dry-run") else 1
