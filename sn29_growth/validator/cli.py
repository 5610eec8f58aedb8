"""Flags of ``neurons/validator.py`` (bittensor conventions) → a config and real clients → :func:`run`."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from sn29_growth.cliutil import ArgumentParser
from sn29_growth.eval.budget import BudgetSettings
from sn29_growth.logs import setup_logging
from sn29_growth.validator.config import DEFAULT_WEIGHTS_INTERVAL_BLOCKS, VERSION_KEY, ValidatorConfig
from sn29_growth.validator.lock import ValidatorLock, ValidatorLocked

log = logging.getLogger("sn29_growth.validator")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="neurons/validator.py",
        description="SN29 validator: discover committed models, download, check, evaluate, score, set weights.",
    )
    _add_chain_arguments(p.add_argument_group("chain"))
    _add_evaluation_arguments(p.add_argument_group("evaluation"))
    _add_running_arguments(p.add_argument_group("running"))
    return p


def _add_chain_arguments(chain) -> None:
    chain.add_argument("--netuid", type=int, default=29, metavar="N", help="subnet id")
    chain.add_argument(
        "--subtensor.network", dest="network", default="finney", help="finney | test | local | ws://host:port"
    )
    chain.add_argument("--wallet.name", dest="wallet_name", default="default", help="coldkey wallet name")
    chain.add_argument(
        "--wallet.hotkey", dest="wallet_hotkey", default="default", help="hotkey name (it sets the weights)"
    )
    chain.add_argument(
        "--wallet.path", dest="wallet_path", default="~/.bittensor/wallets", help="wallets folder"
    )
    chain.add_argument(
        "--dont-set-weights", action="store_true", help="evaluate and score, never set weights"
    )
    chain.add_argument(
        "--weights-interval-blocks",
        type=int,
        default=DEFAULT_WEIGHTS_INTERVAL_BLOCKS,
        metavar="BLOCKS",
        help="set weights at most once per this many blocks (12 s each: 175 is about 35 minutes)",
    )
    chain.add_argument(
        "--version-key",
        type=int,
        default=VERSION_KEY,
        metavar="N",
        help="version key sent with the weights (the subnet's validators agree on it)",
    )


def _add_evaluation_arguments(ev) -> None:
    ev.add_argument(
        "--model-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="downloads, caches and the validator state (validator_state.json, validator.lock)",
    )
    ev.add_argument("--device", default="cuda", help="where models are evaluated: cpu | cuda | cuda:N")
    ev.add_argument(
        "--competitions",
        default=None,
        metavar="FILE|URL",
        help="competitions.json URL or file, re-read every 15 minutes (default: the packaged copy)",
    )
    ev.add_argument(
        "--hall-of-fame",
        default=None,
        metavar="FILE|URL",
        help="hall_of_fame.json URL or file: bounties paid beside the competitions (default: none)",
    )
    ev.add_argument(
        "--dataset",
        default=None,
        metavar="fineweb|local|PATH",
        help="evaluation samples: FineWeb-edu, the embedded held-out corpus, or a .txt/.jsonl file "
        "(default: fineweb; offline: local)",
    )
    ev.add_argument(
        "--samples", type=int, default=None, help="samples per evaluation (default: competition's)"
    )
    ev.add_argument("--seed", type=int, default=None, help="fixed sample seed (default: changes every epoch)")
    ev.add_argument(
        "--eval-timeout",
        type=float,
        default=None,
        help="fixed seconds before a model's evaluation is killed (default: each model's own budget, "
        "floor + factor x forward FLOPs of its samples at the device's measured rate + reading its "
        "weights + tokenizing its samples, printed per model in the log)",
    )
    ev.add_argument(
        "--eval-timeout-factor",
        type=float,
        default=4.0,
        help="margin of the per-model budget over its forward passes at the measured rate (default 4)",
    )
    ev.add_argument(
        "--eval-timeout-floor", type=float, default=120.0, help="least seconds per model (default 120)"
    )
    ev.add_argument(
        "--disk-budget-gb",
        type=float,
        default=None,
        metavar="GB",
        help="cap on the model cache in MODEL_DIR/hub, in GiB: a model that would not fit is not downloaded "
        "in that step (default: no cap)",
    )


def _add_running_arguments(run) -> None:
    run.add_argument("--offline", action="store_true", help="no chain, no Hub: evaluate the --models entries")
    run.add_argument(
        "--models",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="JSON list of {model, block, label[, competition]} (docs/formats.md): benchmarks online "
        "(never weighted), the miners offline",
    )
    run.add_argument("--steps", type=int, default=None, help="stop after N steps (default: run forever)")
    run.add_argument(
        "--step-interval", type=float, default=60.0, metavar="SECONDS", help="seconds between steps"
    )
    run.add_argument(
        "--max-environment-failures",
        type=int,
        default=5,
        help="exit (code 3) after this many consecutive steps abandoned for the host's fault "
        "(no CUDA, CUDA errors, device out of memory, disk full, workers that cannot start)",
    )
    run.add_argument("--wandb-project", default=None, help="log each step to Weights & Biases (optional)")
    run.add_argument(
        "--eval-worker", default=None, help=argparse.SUPPRESS
    )  # replace the worker command (tests)
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def config_from_args(args: argparse.Namespace) -> ValidatorConfig:
    return ValidatorConfig(
        model_dir=args.model_dir.expanduser(),
        netuid=args.netuid,
        device=args.device,
        competitions=args.competitions,
        hall_of_fame=args.hall_of_fame,
        dataset=args.dataset or ("local" if args.offline else "fineweb"),
        samples=args.samples,
        seed=args.seed,
        eval_timeout_s=args.eval_timeout,
        budget=BudgetSettings(factor=args.eval_timeout_factor, floor_s=args.eval_timeout_floor),
        weights_interval_blocks=args.weights_interval_blocks,
        set_weights=not args.dont_set_weights,
        version_key=args.version_key,
        disk_budget_bytes=int(args.disk_budget_gb * 1024**3) if args.disk_budget_gb else None,
        offline=args.offline,
        models_file=args.models,
        step_interval_s=args.step_interval,
        max_environment_failures=args.max_environment_failures,
        worker_command=tuple(shlex.split(args.eval_worker)) if args.eval_worker else None,
    )


def build_clients(config: ValidatorConfig, args: argparse.Namespace):
    from sn29_growth.eval.competitions import CompetitionsSource, HallOfFameSource
    from sn29_growth.eval.worker import run_in_worker
    from sn29_growth.validator.entries import load_entries
    from sn29_growth.validator.step import Clients

    entries = load_entries(config.models_file, injected=not config.offline) if config.models_file else []
    hof = HallOfFameSource(config.hall_of_fame, min_interval_s=900) if config.hall_of_fame else None
    competitions = CompetitionsSource(config.competitions, min_interval_s=900)

    def evaluate(request, timeout):
        return run_in_worker(
            request, timeout, command=list(config.worker_command) if config.worker_command else None
        )

    if config.worker_command is None:
        from sn29_growth.eval.worker import warm_factory

        warm_factory()  # its imports overlap the step's discovery and downloads

    if config.offline:
        from sn29_growth.validator.offline import OfflineChain

        start = max((e.block for e in entries), default=0) + 1
        return Clients(
            chain=OfflineChain(start_block=start),
            competitions=competitions,
            hall_of_fame=hof,
            store=None,
            evaluate=evaluate,
            entries=entries,
        )

    import bittensor as bt

    from sn29_growth.chain.bittensor_client import BittensorChainClient
    from sn29_growth.hub.hf_client import HfHubClient
    from sn29_growth.hub.store import DiskBudget, ModelStore

    wallet = bt.Wallet(
        name=args.wallet_name, hotkey=args.wallet_hotkey, path=str(Path(args.wallet_path).expanduser())
    )
    chain = BittensorChainClient(config.netuid, wallet, network=args.network)
    store = ModelStore(
        HfHubClient(), config.model_dir / "hub", DiskBudget(max_bytes=config.disk_budget_bytes)
    )
    return Clients(
        chain=chain,
        competitions=competitions,
        hall_of_fame=hof,
        store=store,
        evaluate=evaluate,
        entries=entries,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the validator; the exit code says how it went (errors are one line on stderr, no traceback).

    0: at least one step completed, or no ``--steps`` limit; 1: every step of ``--steps N`` failed;
    2: bad flags, a device that is not there (checked before anything is written), or the model
    directory is locked by another validator; 3: ``--max-environment-failures`` consecutive steps were
    abandoned for the host's fault.
    """
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        config = config_from_args(args)
    except ValueError as e:
        return _error(str(e))
    from sn29_growth.eval.environment import device_problem

    problem = device_problem(config.device)
    if problem:
        return _error(problem)
    lock = ValidatorLock(config.model_dir)
    try:
        lock.acquire()  # before anything reads or cleans the model directory
    except ValidatorLocked as e:
        return _error(str(e))
    except OSError as e:
        return _error(f"cannot lock {lock.path}: {e}")
    try:
        return _run(config, args, lock)
    finally:
        lock.release()


def _run(config: ValidatorConfig, args: argparse.Namespace, lock: ValidatorLock) -> int:
    """Build the clients and run the loop under ``lock`` (held); returns the exit code."""
    from sn29_growth.validator.runner import run_steps

    try:
        clients = build_clients(config, args)
    except ValueError as e:
        return _error(str(e))
    reporter = _wandb_reporter(args.wandb_project)

    def on_report(report):
        print(report.format_table(), flush=True)
        if reporter:
            reporter(report)

    from sn29_growth.validator.runner import EnvironmentFailed

    try:
        summary = run_steps(config, clients, max_steps=args.steps, on_report=on_report, lock=lock)
    except EnvironmentFailed as e:
        return _error(str(e), code=3)
    if args.steps is not None and summary.all_failed:
        return _error(f"all {summary.steps_failed} steps failed (see the log above)", code=1)
    return 0


def _error(message: str, code: int = 2) -> int:
    print(f"validator: error: {message}", file=sys.stderr)
    return code


def _wandb_reporter(project: str | None):
    if not project:
        return None
    try:
        import wandb
    except ImportError:
        log.warning("--wandb-project given but wandb is not installed (pip install wandb); not logging")
        return None
    wandb_run = wandb.init(project=project, job_type="validator")

    def report(r):
        wandb_run.log({"block": r.block, **{f"weight/{u}": w for u, w in r.weights.items()}}, step=r.step)

    return report
