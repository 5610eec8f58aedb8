"""``sn29 demo``: the whole product on the embedded default — no chain, no Hub, no GPU.

1. Base models: a tiny Llama and a tiny Phi3 from a fixed seed, saved in the SN29 checkpoint format and
   reloaded through the patched classes; their loss on the embedded corpus's held-out part.
2. A briefly trained Llama is published by "alice" (a local Hub directory and a chain kept in a file):
   it is the competition's current best.
3. Growth on its own: the base grown in every dimension but vocabulary (hidden size with norm_divisor,
   heads, kv heads, MLP, depth); the loss before and after, and the new parameters' first gradients.
4. A miner round: find the best model on the chain, grow it within the (demo) competition's parameter
   limit, verify the loss is unchanged, train it, check that it would win with the validator's own code,
   upload it privately, commit it, read the commitment back, make it public.
5. A validator step over the same chain and Hub: download, check, hash, evaluate, score, set weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sn29_growth.checkpoint import CONFIG_FILE, save_model
from sn29_growth.corpus import load_corpus
from sn29_growth.lm import corpus_loss, encode
from sn29_growth.loading import load_model
from sn29_growth.tiny import build_tiny
from sn29_growth.tokenizer import embedded_tokenizer

log = logging.getLogger(__name__)

FAMILIES = {"llama": "llama-gqa", "phi3": "phi3"}

# c00 with a parameter limit a tiny model can grow into on a CPU in a minute; the live file's other knobs.
DEMO_COMPETITIONS = {
    "default": {
        "group_samples": 10,
        "dataset": "fineweb2",
        "pool_size": 6,
        "pend_size": 3,
        "advantage_initial": 0.004,
        "advantage_decay": 0.995,
        "max_sequence_len": 4096,
        "free_tokenizer": True,
        "weight_skew_factor": 2.0,
        "cap_sample_len": 17500,
    },
    "c00": {
        "reward": 1.0,
        "model_types": ["LlamaForCausalLM"],
        "model_size": 8_000_000,
        "parameters": 600_000,
    },
}


@dataclass
class DemoReport:
    out_dir: Path
    sections: dict[str, Any] = field(default_factory=dict)

    def write(self) -> Path:
        path = self.out_dir / "demo_report.json"
        from sn29_growth.atomic import atomic_write_json

        atomic_write_json(path, self.sections)
        return path


def _say(text: str = "") -> None:
    print(text, flush=True)


def held_out_sequences(tokenizer, max_samples: int = 32, max_len: int = 256):
    texts = [s.text for s in load_corpus().held_out[:max_samples]]
    return encode(tokenizer, texts, max_len=max_len)


def build_base_models(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Save a tiny Llama and a tiny Phi3 (with the embedded tokenizer); returns their directories."""
    tokenizer = embedded_tokenizer()
    paths = {}
    for family, variant in FAMILIES.items():
        path = out_dir / f"base-{family}"
        if not (path / CONFIG_FILE).exists():
            model = build_tiny(variant, seed=seed)
            save_model(model, path, tokenizer=tokenizer)
        paths[family] = path
    return paths


def step_base_models(out_dir: Path, seed: int, report: DemoReport) -> dict[str, Path]:
    _say(f"[1/5] base models: tiny Llama and Phi3 from seed {seed}, saved under {out_dir}")
    seqs = held_out_sequences(embedded_tokenizer())
    rows = {}
    paths = build_base_models(out_dir, seed)
    for family, path in paths.items():
        model = load_model(path)
        loss = corpus_loss(model, seqs)
        params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        rows[family] = {
            "class": f"{type(model).__module__}.{type(model).__name__}",
            "parameters": params,
            "held_out_loss": loss.mean_token_loss,
        }
        _say(
            f"      {family:<6} {rows[family]['class']:<36} {params:>9,} params  held-out loss "
            f"{loss.mean_token_loss:.4f}"
        )
    report.sections["base_models"] = rows
    return paths


def step_publish_base(out_dir: Path, base: Path, steps: int, report: DemoReport):
    from sn29_growth.hub.local import LocalHubClient
    from sn29_growth.miner.offline import FileChain
    from sn29_growth.miner.publish import publish
    from sn29_growth.train import train
    from sn29_growth.train.config import BatchConfig, CheckpointConfig, TrainConfig

    _say(f"[2/5] alice trains the Llama base for {steps} steps and publishes it (local Hub + file chain)")
    alice_dir = out_dir / "alice-trained"
    if not (alice_dir / CONFIG_FILE).exists():
        cfg = TrainConfig(
            steps=steps,
            eval_every=0,
            batch=BatchConfig(batch_size=8, seq_len=128),
            checkpoint=CheckpointConfig(save_every=0),
            device="cpu",
            progress=True,
        )
        train(base, alice_dir, cfg)
    alice = _hotkey("//sn29-demo-alice")
    hub = LocalHubClient(out_dir / "local-hub")
    published = publish(
        alice_dir,
        repo_id="alice/tiny-llama",
        competition="c00",
        hotkey=alice,
        hub=hub,
        chain=FileChain(out_dir / "offline-chain.json", alice),
        state_path=out_dir / "alice-publish.json",
    )
    _say(f"      committed {published.commitment}")
    report.sections["alice"] = {"commitment": str(published.commitment)}
    return alice_dir


def step_growth(out_dir: Path, src: Path, report: DemoReport) -> None:
    from sn29_growth.growth.every_dimension import grow_every_dimension

    dst = out_dir / "grown-every-dimension"
    _say("[3/5] growth: hidden (norm_divisor), heads, kv heads, MLP and depth, verified on the held-out text")
    g = grow_every_dimension(src, dst)
    _say(
        f"      {g.parameters_before:,} → {g.parameters_after:,} parameters; held-out loss "
        f"{g.loss_before:.6f} → {g.loss_after:.6f} (Δ {g.loss_delta:+.1e}); "
        f"new parameter slices stuck after 2 steps: {g.stuck_slices}"
    )
    from sn29_growth.network.rules import check_model

    network = check_model(dst)
    verdict = "loads and scores alike" if network.ok else f"NOT compatible ({network.summary()})"
    _say(f"      network check (validators on transformers 4.44): {verdict}")
    report.sections["growth"] = {**g.to_dict(), "network": network.to_dict()}


def step_miner(out_dir: Path, train_steps: int, report: DemoReport):
    from sn29_growth.miner.config import MinerConfig
    from sn29_growth.miner.offline import offline_clients
    from sn29_growth.miner.run import run_miner
    from sn29_growth.train.config import BatchConfig, CheckpointConfig, OptimizerConfig, TrainConfig

    _say(
        f"[4/5] miner: find the best → grow within {DEMO_COMPETITIONS['c00']['parameters']:,} parameters "
        f"→ verify → train {train_steps} steps → would it win? → upload → commit"
    )
    comp_file = out_dir / "competitions.json"
    comp_file.write_text(json.dumps(DEMO_COMPETITIONS, indent=2))
    clients = offline_clients(
        out_dir / "miner",
        local_hub=out_dir / "local-hub",
        chain_file=out_dir / "offline-chain.json",
        competitions=str(comp_file),
        hotkey=_hotkey("//sn29-demo-bob"),
    )
    train_cfg = TrainConfig(
        steps=train_steps,
        eval_every=max(train_steps // 4, 1),
        device="cpu",
        progress=True,
        optimizer=OptimizerConfig(lr=2e-3, weight_decay=0.0),
        batch=BatchConfig(batch_size=8, seq_len=128),
        checkpoint=CheckpointConfig(save_every=max(train_steps // 2, 1)),
    )
    config = MinerConfig(
        work_dir=out_dir / "miner",
        hf_repo="bob/tiny-llama-grown",
        competition="c00",
        train=train_cfg,
        train_data="local",
        dataset="local",
        device="cpu",
    )
    result = run_miner(config, clients)
    _say("\n".join("      " + line for line in result.format().splitlines()))
    curves = sorted((out_dir / "miner").glob("runs/*/trained/loss_curve.png"))
    if curves:
        _say(f"      training curve: {curves[-1]}")
    report.sections["miner"] = result.to_dict()
    return result


def step_validator(out_dir: Path, report: DemoReport) -> None:
    from sn29_growth.eval.competitions import CompetitionsSource
    from sn29_growth.eval.request import handle_request
    from sn29_growth.eval.worker import result_of
    from sn29_growth.hub.local import LocalHubClient
    from sn29_growth.hub.store import DiskBudget, ModelStore
    from sn29_growth.miner.offline import FileChain
    from sn29_growth.validator.config import ValidatorConfig
    from sn29_growth.validator.state import ValidatorState
    from sn29_growth.validator.step import Clients, step

    _say("[5/5] validator: discover → download → check → hash → evaluate (held-out part) → score → weights")
    config = ValidatorConfig(
        model_dir=out_dir / "validator", dataset="local", device="cpu", seed=0, step_interval_s=0
    )
    clients = Clients(
        chain=FileChain(out_dir / "offline-chain.json", _hotkey("//sn29-demo-validator")),
        competitions=CompetitionsSource(str(out_dir / "competitions.json")),
        store=ModelStore(
            LocalHubClient(out_dir / "local-hub"), config.model_dir / "hub", DiskBudget(margin_bytes=0)
        ),
        evaluate=lambda request, timeout: result_of(handle_request(request), 0.0),
    )
    result = step(ValidatorState(), clients, config)
    _say("\n".join("      " + line for line in result.format_table().splitlines()))
    report.sections["validator"] = {"rows": result.rows, "weights": result.weights}


ROUND_STATE = (
    "local-hub",
    "offline-chain.json",
    "alice-publish.json",
    "miner",
    "validator",
    "grown-every-dimension",
    "competitions.json",
    "demo_report.json",
)


def _fresh_round(out_dir: Path) -> None:
    """Each demo starts a fresh round (chain, Hub, miner, validator); the deterministic models are kept."""
    import shutil

    for name in ROUND_STATE:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _hotkey(uri: str) -> str:
    from bittensor.sp_core import Keypair

    return Keypair.create_from_uri(uri).ss58_address


def run_demo(out_dir: str | Path, seed: int = 0, base_steps: int = 60, train_steps: int = 120) -> DemoReport:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _fresh_round(out_dir)
    report = DemoReport(out_dir)
    paths = step_base_models(out_dir, seed, report)
    alice = step_publish_base(out_dir, paths["llama"], base_steps, report)
    step_growth(out_dir, alice, report)
    step_miner(out_dir, train_steps, report)
    step_validator(out_dir, report)
    _say(f"report: {report.write()}")
    return report
