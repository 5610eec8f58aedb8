"""competitions.json / hall_of_fame.json: parsing, per-entry rejection, packaged copies and last-good sources."""

from __future__ import annotations

import http.server
import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from sn29_growth.eval.competitions import (
    Bounty,
    Competition,
    Competitions,
    CompetitionsSource,
    HallOfFameSource,
    default_competitions,
    default_hall_of_fame,
    load_competitions,
    load_hall_of_fame,
    parse_competitions,
    parse_hall_of_fame,
    read_location,
)

DATA = Path(__file__).parent / "data" / "sn29"
PUBLISHED = sorted(DATA.glob("competitions*.json"))
HOTKEY_A = "5FFM6Nvvm78GqyMratgXXvjbqZPi7SHgSQ81nyS96jBuUWgt"
HOTKEY_B = "5FFApaS75bv5pJHfAp2FVLBj9ZaXuFDjEypsaBNc1wCfe52v"

BASE_ENTRY = {
    "reward": 0.5,
    "model_types": ["LlamaForCausalLM"],
    "model_size": 1000,
    "parameters": 100,
    "dataset": "fineweb2",
}


def doc(**competitions) -> dict:
    return {"default": {"group_samples": 10, "weight_skew_factor": 2.0}, **competitions}


# ------------------------------------------------------------------------------------ published files


def test_the_published_files_are_all_there():
    assert [p.name for p in PUBLISHED] == [
        "competitions.json",
        "competitions_20240805.json",
        "competitions_20240821.json",
        "competitions_20241205.json",
    ]


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.name)
def test_every_published_file_loads_without_rejections(path):
    comps = load_competitions(path)
    assert list(comps) == ["c00", "c01"]
    assert dict(comps.rejected) == {}
    assert comps.origin == os.fspath(path)
    assert abs(sum(comps.rewards().values()) - 1.0) < 1e-12
    for comp in comps.values():
        assert comp.dataset == "fineweb2"
        assert comp.advantage_initial == 0.004
        assert comp.advantage_decay == 0.995
        assert comp.pool_size == 6


def test_latest_file_values_with_defaults_merged():
    comps = load_competitions(DATA / "competitions.json")
    c00, c01 = comps["c00"], comps["c01"]
    assert c00.model_types == ("LlamaForCausalLM", "SlicedLlamaForCausalLM")
    assert c00.model_size == 42_000_000_000 and c00.parameters == 20_100_000_000
    assert c00.cap_sample_len == 17500 and c01.cap_sample_len == 15000
    assert c00.tokenizer == "Xenova/gpt-4" and c01.tokenizer == "coldint/phi3_stock_tokenizer"
    for c in (c00, c01):
        assert (c.group_samples, c.rows_per_page, c.eval_pages, c.max_sequence_len) == (10, 50, 16, 4096)
        assert c.free_tokenizer is True and c.weight_skew_factor == 2.0
        # knobs the file does not set take the reference defaults
        assert (c.pend_size, c.eval_samples, c.max_tokenize_fails, c.discard_winrate) == (3, 1500, 3, 0.02)
        assert c.extra == {"comment": "Increased parameter limits to 20.1B"}
    assert c01.allows_model_type("Phi3ForCausalLM") and not c01.allows_model_type("Phi3For")


def test_oldest_file_top_level_comment_is_ignored_and_missing_knobs_default():
    raw = json.loads((DATA / "competitions_20240805.json").read_text())
    assert isinstance(raw["comment"], str)  # the key that made the reference reject files
    comps = load_competitions(DATA / "competitions_20240805.json")
    assert "comment" not in comps
    assert comps["c00"].reward == 0.75 and comps["c01"].reward == 0.25
    assert comps["c01"].tokenizer is None  # the model's own tokenizer
    assert comps["c01"].free_tokenizer is False
    assert comps["c00"].group_samples == 1 and comps["c00"].weight_skew_factor == 1.2


def test_packaged_default_is_the_latest_published_file():
    packaged = default_competitions()
    latest = load_competitions(DATA / "competitions.json")
    assert dict(packaged.competitions) == dict(latest.competitions)
    assert packaged.origin.startswith("package:")
    assert default_competitions() is packaged  # parsed once


def test_as_dict_round_trips():
    comp = default_competitions()["c00"]
    again = Competition.from_dict("c00", json.loads(json.dumps(comp.as_dict())))
    assert again == comp


# ------------------------------------------------------------------------------- per-entry validation


def test_stray_top_level_keys_are_ignored():
    comps = parse_competitions(
        {
            **doc(c00=BASE_ENTRY),
            "comment": "a string",
            "_note": {"reward": "not validated"},
            "version": 3,
            "list": [1, 2],
        }
    )
    assert list(comps) == ["c00"]
    assert dict(comps.rejected) == {}
    assert comps["c00"].group_samples == 10


def test_underscore_keys_inside_an_entry_are_dropped_and_unknown_keys_kept():
    comps = parse_competitions(doc(c00={**BASE_ENTRY, "_why": "x", "future_knob": [1, 2]}))
    assert dict(comps["c00"].extra) == {"future_knob": [1, 2]}
    with pytest.raises(TypeError):
        comps["c00"].extra["x"] = 1  # read-only


def test_competition_values_override_defaults():
    comps = parse_competitions(doc(c00={**BASE_ENTRY, "group_samples": 3}, c01=BASE_ENTRY))
    assert comps["c00"].group_samples == 3
    assert comps["c01"].group_samples == 10


def test_a_bad_entry_is_rejected_alone_with_a_logged_reason(caplog):
    caplog.set_level(logging.WARNING, logger="sn29_growth.eval.competitions")
    comps = parse_competitions(doc(c00=BASE_ENTRY, c01={**BASE_ENTRY, "reward": -1}))
    assert list(comps) == ["c00"]
    assert list(comps.rejected) == ["c01"]
    assert "reward" in comps.rejected["c01"]
    assert any("c01" in r.getMessage() and "reward" in r.getMessage() for r in caplog.records)


def test_a_bad_default_rejects_each_competition_with_the_field_named():
    comps = parse_competitions({"default": {"group_samples": 0}, "c00": BASE_ENTRY, "c01": BASE_ENTRY})
    assert len(comps) == 0
    assert set(comps.rejected) == {"c00", "c01"}
    assert all("group_samples" in reason for reason in comps.rejected.values())


def test_missing_required_keys_are_named():
    entry = {k: v for k, v in BASE_ENTRY.items() if k not in ("parameters", "dataset")}
    comps = parse_competitions({"c00": entry})
    assert comps.rejected["c00"] == "missing required key(s): dataset, parameters"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("reward", -0.1),
        ("reward", float("nan")),
        ("reward", float("inf")),
        ("reward", "0.5"),
        ("reward", True),
        ("model_types", []),
        ("model_types", "LlamaForCausalLM"),
        ("model_types", ["Llama For"]),
        ("model_types", [3]),
        ("model_size", 0),
        ("model_size", 1.5),
        ("parameters", 0),
        ("parameters", -5),
        ("parameters", True),
        ("dataset", ""),
        ("tokenizer", 5),
        ("free_tokenizer", "yes"),
        ("cap_sample_len", -1),
        ("max_sequence_len", -1),
        ("cap_sample_len", "17500"),
        ("max_tokenize_fails", -1),
        ("group_samples", 0),
        ("group_samples", 2.5),
        ("pool_size", 0),
        ("pend_size", -1),
        ("rows_per_page", 0),
        ("rows_per_page", 101),
        ("eval_pages", 0),
        ("eval_samples", 0),
        ("advantage_initial", -0.001),
        ("advantage_initial", 1.0),
        ("advantage_decay", 0.0),
        ("advantage_decay", 1.01),
        ("weight_skew_factor", 0.0),
        ("weight_skew_factor", -2.0),
        ("discard_winrate", 1.5),
    ],
)
def test_invalid_values_raise_naming_the_field(key, value):
    with pytest.raises(ValueError, match=f"^{key}:"):
        Competition.from_dict("c00", {**BASE_ENTRY, key: value})


@pytest.mark.parametrize("name", ["", "default", "c:00", "_c00", "c 00", "x" * 65])
def test_invalid_competition_ids(name):
    with pytest.raises(ValueError, match="^name:"):
        Competition.from_dict(name, BASE_ENTRY)


def test_integral_floats_are_accepted_for_integer_fields():
    comp = Competition.from_dict("c00", {**BASE_ENTRY, "model_size": 4.2e10, "pool_size": 6.0})
    assert comp.model_size == 42_000_000_000 and isinstance(comp.model_size, int)
    assert comp.pool_size == 6 and isinstance(comp.pool_size, int)


def test_competition_is_frozen_and_hashable():
    comp = Competition.from_dict("c00", BASE_ENTRY)
    with pytest.raises(AttributeError):
        comp.reward = 1.0  # type: ignore[misc]
    assert hash(comp) == hash(Competition.from_dict("c00", BASE_ENTRY))


@pytest.mark.parametrize("document", ["[1, 2]", '"text"', "{not json", b"\xff\xfe"])
def test_a_document_that_is_not_an_object_raises(document):
    with pytest.raises(ValueError):
        parse_competitions(document)


def test_competitions_mapping_checks_names():
    comp = Competition.from_dict("c00", BASE_ENTRY)
    with pytest.raises(ValueError, match="competitions"):
        Competitions({"c01": comp})


# ---------------------------------------------------------------------------------------- hall of fame


def test_published_hall_of_fame_loads():
    hof = load_hall_of_fame(DATA / "hall_of_fame.json")
    assert dict(hof.rejected) == {}
    assert len(hof.bounties) == 4
    assert hof.for_hotkey(HOTKEY_A) == (
        Bounty(
            hotkey=HOTKEY_A,
            block=3382073,
            reward=0.2,
            desc="claiming UID 0",
            url="https://x.taostats.io/extrinsic/3382073-0049",
        ),
    )
    control = [b for b in hof.bounties if b.desc == "Emission control"]
    assert len(control) == 1 and control[0].reward == 1e9
    assert default_hall_of_fame().bounties == hof.bounties


def test_bad_hall_of_fame_entries_are_skipped_with_reasons(caplog):
    caplog.set_level(logging.WARNING, logger="sn29_growth.eval.competitions")
    hof = parse_hall_of_fame(
        {
            "_comment": "ignored",
            HOTKEY_A: [
                {"block": 10, "reward": 1.0, "desc": "good"},
                {"block": 10, "reward": -1.0},
                {"reward": 1.0},
                {"block": -3, "reward": 1.0},
                "not an object",
                {"block": 11, "reward": 0.5, "url": 7},
            ],
            HOTKEY_B: {"block": 1, "reward": 1},
            "not-an-ss58-address": [{"block": 1, "reward": 1}],
        }
    )
    assert [(b.hotkey, b.block, b.desc) for b in hof.bounties] == [(HOTKEY_A, 10, "good")]
    assert set(hof.rejected) == {
        f"{HOTKEY_A}[1]",
        f"{HOTKEY_A}[2]",
        f"{HOTKEY_A}[3]",
        f"{HOTKEY_A}[4]",
        f"{HOTKEY_A}[5]",
        HOTKEY_B,
        "not-an-ss58-address[0]",
    }
    assert hof.rejected[f"{HOTKEY_A}[1]"].startswith("reward:")
    assert hof.rejected[f"{HOTKEY_A}[2]"] == "missing required key(s): block"
    assert hof.rejected[f"{HOTKEY_A}[3]"].startswith("block:")
    assert hof.rejected[f"{HOTKEY_A}[5]"].startswith("url:")
    assert hof.rejected["not-an-ss58-address[0]"].startswith("hotkey:")
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 7


# ----------------------------------------------------------------------------------- reading and sources


class _Server:
    """A tiny http.server on 127.0.0.1 whose next answers the test scripts."""

    def __init__(self):
        self.status = 200
        self.body = b"{}"
        self.delay = 0.0
        self.requests = 0
        self.release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                owner.requests += 1
                if owner.delay:
                    owner.release.wait(owner.delay)
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(owner.body)))
                    self.end_headers()
                    self.wfile.write(owner.body)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/competitions.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, obj=None, *, status=200, raw=None, delay=0.0):
        self.status = status
        self.body = raw if raw is not None else json.dumps(obj).encode()
        self.delay = delay

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    s = _Server()
    yield s
    s.close()


def test_load_from_url(server):
    server.serve(json.loads((DATA / "competitions.json").read_text()))
    comps = load_competitions(server.url)
    assert dict(comps.competitions) == dict(default_competitions().competitions)
    assert comps.origin == server.url


def test_url_timeout_is_honoured(server):
    server.serve(doc(c00=BASE_ENTRY), delay=5.0)
    start = time.monotonic()
    with pytest.raises(OSError):  # TimeoutError / URLError(timeout)
        read_location(server.url, timeout=0.3)
    assert time.monotonic() - start < 2.0


def test_read_location_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="scheme"):
        read_location("ftp://example.com/competitions.json")
    with pytest.raises(ValueError, match="timeout"):
        read_location(tmp_path / "x.json", timeout=0)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(ValueError, match="larger"):
        read_location(big, max_bytes=1024)


def test_source_keeps_the_last_good_config_over_url_failures(server, caplog):
    caplog.set_level(logging.WARNING, logger="sn29_growth.eval.competitions")
    source = CompetitionsSource(server.url, timeout=0.5)

    server.serve(doc(c00=BASE_ENTRY, c01={**BASE_ENTRY, "reward": 0.25}))
    good = source.get()
    assert list(good) == ["c00", "c01"] and source.last_error is None
    assert source.last_good is good

    server.serve(status=500, raw=b'{"error": "boom"}')
    assert source.get() is good
    assert "500" in source.last_error

    server.serve(raw=b"{truncated")
    assert source.get() is good
    assert "JSONDecodeError" in source.last_error

    server.serve(["not", "an", "object"])
    assert source.get() is good

    server.serve({"c09": {"reward": -1}, "comment": "nothing valid at all"})
    assert source.get() is good
    assert "no valid competition" in source.last_error

    server.serve(doc(c00=BASE_ENTRY), delay=3.0)
    start = time.monotonic()
    assert source.get() is good
    assert time.monotonic() - start < 2.0
    server.release.set()

    server.serve(doc(c00={**BASE_ENTRY, "reward": 0.9}), delay=0.0)
    fresh = source.get()
    assert list(fresh) == ["c00"] and fresh["c00"].reward == 0.9  # c01 removed on purpose
    assert source.last_error is None
    assert sum("keeping the last good one" in r.getMessage() for r in caplog.records) == 5


def test_a_rejected_entry_keeps_its_last_good_definition(server):
    source = CompetitionsSource(server.url)
    server.serve(doc(c00=BASE_ENTRY, c01={**BASE_ENTRY, "reward": 0.25}))
    first = source.get()
    server.serve(doc(c00={**BASE_ENTRY, "reward": 0.75}, c01={**BASE_ENTRY, "reward": "lots"}))
    second = source.get()
    assert second["c00"].reward == 0.75
    assert second["c01"] == first["c01"]
    assert "reward" in second.rejected["c01"]


def test_file_source_survives_a_corrupt_or_missing_file(tmp_path):
    path = tmp_path / "competitions.json"
    path.write_text(json.dumps(doc(c00=BASE_ENTRY)))
    source = CompetitionsSource(path)
    good = source.get()
    assert list(good) == ["c00"]
    path.write_text('{"c00": ')
    assert source.get() is good
    path.unlink()
    assert source.get() is good
    assert "FileNotFoundError" in source.last_error


def test_source_without_any_good_read_serves_the_packaged_default(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="sn29_growth.eval.competitions")
    source = CompetitionsSource(tmp_path / "missing.json")
    assert source.get() is default_competitions()
    assert source.last_good is None
    assert any("packaged default" in r.getMessage() for r in caplog.records)
    assert CompetitionsSource(None).get() is default_competitions()


def test_min_interval_rate_limits_reads(tmp_path):
    now = [100.0]
    path = tmp_path / "competitions.json"
    path.write_text(json.dumps(doc(c00=BASE_ENTRY)))
    source = CompetitionsSource(path, min_interval_s=900, clock=lambda: now[0])
    first = source.get()
    path.write_text(json.dumps(doc(c00={**BASE_ENTRY, "reward": 0.9})))
    now[0] += 899
    assert source.get() is first
    assert source.get(force=True)["c00"].reward == 0.9
    path.write_text(json.dumps(doc(c00={**BASE_ENTRY, "reward": 0.1})))
    now[0] += 900
    assert source.get()["c00"].reward == 0.1


def test_hall_of_fame_source_keeps_last_good(tmp_path):
    path = tmp_path / "hall_of_fame.json"
    path.write_text(json.dumps({HOTKEY_A: [{"block": 5, "reward": 1.0}]}))
    source = HallOfFameSource(path)
    good = source.get()
    assert [b.block for b in good.bounties] == [5]
    path.write_text("[]")
    assert source.get() is good
    assert HallOfFameSource(tmp_path / "missing.json").get() is default_hall_of_fame()


def test_missing_keys_take_the_reference_defaults():
    from sn29_growth.eval.competitions import REFERENCE_DEFAULTS

    comp = Competition.from_dict("c00", BASE_ENTRY)
    for key, value in REFERENCE_DEFAULTS.items():
        assert getattr(comp, key) == value, key
    assert comp.pool_size == 7  # the reference's code default (every published file sets 6)
    assert comp.sample_limits(own_tokenizer=False) == (20480, 4096)
    assert comp.sample_limits(own_tokenizer=True) == (0, None)  # no cap; no limit known: rejected


def test_zero_cap_and_length_mean_none_and_a_whole_competition_is_not_rejected():
    comps = parse_competitions({"c00": {**BASE_ENTRY, "cap_sample_len": 0, "max_sequence_len": 0}})
    assert comps.rejected == {}
    assert comps["c00"].sample_limits(own_tokenizer=False) == (0, 0)
    assert comps["c00"].sample_limits(own_tokenizer=True) == (0, 0)
    set_both = Competition.from_dict("c00", {**BASE_ENTRY, "cap_sample_len": 100, "max_sequence_len": 50})
    assert set_both.sample_limits(True) == set_both.sample_limits(False) == (100, 50)
