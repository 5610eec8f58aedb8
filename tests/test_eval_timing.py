"""Stage timing: exclusive nesting, validation, JSON round trip and the one-line rendering."""

from __future__ import annotations

import pytest

from sn29_growth.eval.timing import StageClock, StageTimes, combined, pipeline_line, with_worker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_nested_stages_count_only_once():
    t = FakeClock()
    clock = StageClock(t)
    with clock.stage("checks"):
        t.now += 1.0
        with clock.stage("download"):
            t.now += 5.0
        t.now += 0.5
        clock.timed("hash", lambda: setattr(t, "now", t.now + 2.0))
    with clock.stage("eval"):
        t.now += 10.0
    times = clock.times()
    assert times == StageTimes(download_s=5.0, checks_s=1.5, hash_s=2.0, eval_s=10.0)
    assert times.outside_s == 3.5
    assert times.outside_ratio == pytest.approx(0.35)


def test_a_failing_stage_is_still_counted():
    t = FakeClock()
    clock = StageClock(t)
    with pytest.raises(RuntimeError), clock.stage("load"):
        t.now += 3.0
        raise RuntimeError("boom")
    assert clock.times().load_s == 3.0
    with pytest.raises(ValueError, match="stage 'forward'"), clock.stage("forward"):
        pass


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", True])
def test_times_are_validated(bad):
    with pytest.raises(ValueError, match="load_s"):
        StageTimes(load_s=bad)


def test_json_round_trip_and_rendering():
    times = StageTimes(checks_s=0.25, tokenize_s=0.5, hash_s=3.0, load_s=8.0, eval_s=100.0)
    data = times.to_json()
    assert data["outside_ratio"] == pytest.approx(0.1175)
    assert StageTimes.from_json(data) == times
    assert StageTimes.from_json(None) is None
    assert StageTimes.from_json({"eval_s": -1}) is None
    assert times.render() == (
        "download 0.00s · startup 0.00s · checks 0.25s · tokenize 0.50s · hash 3.00s · load 8.00s · eval 100.0s · "
        "outside eval 11.8%"
    )
    assert StageTimes().outside_ratio is None
    assert StageTimes().render().endswith("outside eval -")


def test_parent_and_worker_times_add_up():
    parent = StageTimes(download_s=4.0, hash_s=1.0)
    worker = StageTimes.from_json(
        StageTimes(hash_s=0.5, eval_s=10.0).to_json()
    )  # as a worker's row carries it
    assert combined(parent, None) == parent
    assert combined(None, None) is None
    line = pipeline_line("alice/model", parent, worker)
    assert line.startswith("alice/model: download 4.00s")
    assert "hash 1.50s" in line and "eval 10.0s" in line and "outside eval 15.0%" in line
    # a worker that took 12 s for 10.5 s of stages spent 1.5 s starting up
    line = pipeline_line("alice/model", parent, worker, worker_wall_s=12.0)
    assert "startup 1.50s" in line and "outside eval 30.0%" in line
    assert with_worker(None, None, 2.0) == StageTimes(startup_s=2.0)
    assert with_worker(parent, StageTimes(eval_s=5.0), 1.0).startup_s == 0.0
