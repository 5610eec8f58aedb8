"""Progress that reaches a log file: plain lines (rates, ETA, never a carriage return) off a terminal, a
tqdm bar on one; used by evaluation, training and growth."""

from __future__ import annotations

import io
import logging

import pytest

from sn29_growth.progress import INTERVAL_ENV, Progress, format_amount, format_duration, interval_from_env

LOGGER = "sn29_growth.test_progress"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def messages(caplog, name: str = LOGGER) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_off_a_terminal_a_line_every_interval_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, stream = Clock(), io.StringIO()
    with Progress(
        1000,
        "model-a",
        unit="tok",
        unit_scale=True,
        logger=logging.getLogger(LOGGER),
        interval_s=30,
        stream=stream,
        clock=clock,
    ) as progress:
        assert progress.bar is None
        clock.now += 10
        progress.update(100, samples="4/40")
        assert messages(caplog) == []  # not yet 30 s
        clock.now += 20
        progress.update(200, samples="12/40")
        clock.now += 5
        progress.update(100, samples="16/40")  # 5 s after the last line: quiet
        clock.now += 30
        progress.update(600, samples="40/40")
        clock.now += 1
    lines = messages(caplog)
    assert lines == [
        "model-a: 300/1k tok (30%) · 10 tok/s · ETA 1m10s · samples=12/40",
        "model-a: 1k/1k tok (100%) · 15.4 tok/s · samples=40/40",
        "model-a: done 1k/1k tok (100%) in 1m06s · 15.2 tok/s · samples=40/40",
    ]
    assert stream.getvalue() == ""  # nothing written to the stream itself
    assert not any("\r" in line for line in lines)


def test_environment_sets_the_interval_and_steps_show_postfix(caplog, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    assert interval_from_env() == 0
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = Clock()
    progress = Progress(
        10,
        "train",
        unit="step",
        initial=4,
        logger=logging.getLogger(LOGGER),
        stream=io.StringIO(),
        clock=clock,
    )
    for _ in range(2):
        clock.now += 2
        progress.update(1, loss=3.25, tok_s="1,024")
    clock.now += 1
    progress.close()
    progress.close()  # idempotent
    assert messages(caplog) == [
        "train: 5/10 step (50%) · 0.5 step/s · ETA 10s · loss=3.25 tok_s=1,024",
        "train: 6/10 step (60%) · 0.5 step/s · ETA 8s · loss=3.25 tok_s=1,024",
        "train: stopped at 6/10 step (60%) in 5s · 0.4 step/s · loss=3.25 tok_s=1,024",
    ]
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    assert interval_from_env() == 30  # unreadable: the default


def test_a_short_phase_logs_nothing_and_disabled_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = logging.getLogger(LOGGER)
    with Progress(5, "quick", logger=log, interval_s=30, stream=io.StringIO()) as progress:
        progress.update(5)
    with Progress(5, "rank1", logger=log, interval_s=0, enabled=False, stream=Terminal()) as progress:
        assert progress.bar is None
        progress.update(5)
    assert messages(caplog) == []


def test_on_a_terminal_a_tqdm_bar(caplog):
    from tqdm import tqdm

    caplog.set_level(logging.INFO, logger=LOGGER)
    stream = Terminal()
    with Progress(
        8, "train", unit="step", logger=logging.getLogger(LOGGER), interval_s=0, stream=stream
    ) as p:
        assert isinstance(p.bar, tqdm)
        p.update(3, loss=1.5)
    assert "train" in stream.getvalue() and "3/8" in stream.getvalue()
    assert messages(caplog) == []  # the bar, not log lines
    with Progress(
        8, "grow", logger=logging.getLogger(LOGGER), bar=False, interval_s=0, stream=Terminal()
    ) as p:
        assert p.bar is None  # bar=False: log lines even on a terminal
        p.update(8)
    assert messages(caplog)[0].startswith("grow: 8/8 it (100%)")


def test_formats():
    assert [format_duration(s) for s in (0.4, 59, 61, 3599, 3600, 90061)] == [
        "0s",
        "59s",
        "1m01s",
        "59m59s",
        "1h00m",
        "1d01h",
    ]
    assert format_amount(1_234_567, True) == "1.23M" and format_amount(123_456, True) == "123k"
    assert format_amount(1_234_567, False) == "1,234,567" and format_amount(999, True) == "999"


# ------------------------------------------------------------------------------------------- users


@pytest.fixture
def every_update(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")


def test_evaluation_logs_tokens_samples_and_rate(every_update, caplog, capsys, held_out_ids):
    from sn29_growth.eval.loss import EngineSettings, summed_losses
    from sn29_growth.tiny import build_tiny

    caplog.set_level(logging.INFO, logger="sn29_growth.eval.loss")
    model = build_tiny("llama-gqa", seed=0).eval()
    seqs = [tuple(int(i) for i in ids) for ids in held_out_ids[:6]]
    summed_losses(model, seqs, EngineSettings(max_batch_size=2), progress=True, desc="tiny-model")
    lines = messages(caplog, "sn29_growth.eval.loss")
    assert len(lines) >= 3 and all(line.startswith("tiny-model: ") for line in lines)
    assert "tok/s" in lines[0] and "ETA" in lines[0] and "samples=" in lines[0]
    assert lines[-1].startswith("tiny-model: done ") and "samples=6/6" in lines[-1]
    assert "\r" not in capsys.readouterr().err  # stderr is not a terminal here: no bar


def test_training_logs_steps_and_validation_losses(every_update, save_tiny, tmp_path, caplog, capsys):
    from sn29_growth.tiny import build_tiny
    from sn29_growth.train import (
        BatchConfig,
        CheckpointConfig,
        OptimizerConfig,
        ScheduleConfig,
        TrainConfig,
        train,
    )

    caplog.set_level(logging.INFO, logger="sn29_growth.train.loop")
    base = save_tiny(build_tiny("llama-gqa", seed=0), "base")
    capsys.readouterr()  # saving the base showed transformers' own bar
    config = TrainConfig(
        steps=4,
        eval_every=2,
        optimizer=OptimizerConfig(lr=3e-3),
        schedule=ScheduleConfig(warmup_steps=2),
        batch=BatchConfig(batch_size=4, seq_len=32, eval_windows=8),
        checkpoint=CheckpointConfig(save_every=0),
        progress=True,  # a bar were stderr a terminal; it is not, so lines
    )
    result = train(base, tmp_path / "out", config)
    lines = messages(caplog, "sn29_growth.train.loop")
    steps = [line for line in lines if line.startswith("train: ")]
    assert steps[0].startswith("train: 1/4 step (25%)") and "ETA" in steps[0]
    assert "loss=" in steps[0] and "tok_s=" in steps[0] and "lr=" in steps[0]
    assert steps[-1].startswith("train: done 4/4 step (100%)")
    vals = [line for line in lines if "validation loss" in line]
    assert vals == [
        f"step {s}: validation loss {v:.4f}"
        for s, v in zip((0, 2, 4), _val_losses(tmp_path / "out"), strict=True)
    ]
    assert result.final_val_loss == pytest.approx(_val_losses(tmp_path / "out")[-1])
    assert "\r" not in capsys.readouterr().err


def _val_losses(out):
    import json

    from sn29_growth.train.loop import LOG_FILE

    records = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    return [r["val_loss"] for r in records if r["kind"] == "eval"]


def test_growth_logs_bytes_and_shards(every_update, save_tiny, tmp_path, caplog):
    from sn29_growth.growth.execute import grow_checkpoint
    from sn29_growth.growth.spec import GrowthSpec, GrowthStep
    from sn29_growth.tiny import build_tiny

    caplog.set_level(logging.INFO, logger="sn29_growth.growth.execute")
    base = save_tiny(build_tiny("llama-gqa", seed=0), "base")
    spec = GrowthSpec((GrowthStep(intermediate_size=256),), seed=0, off_network=True)
    grow_checkpoint(base, tmp_path / "grown", spec)
    lines = messages(caplog, "sn29_growth.growth.execute")
    grow = [line for line in lines if line.startswith("grow: ")]
    assert grow and "B/s" in grow[0] and "shards=0/1 done" in grow[0]
    assert grow[-1].startswith("grow: done ") and "(100%)" in grow[-1]
    assert any("(shard 1/1)" in line for line in lines)
