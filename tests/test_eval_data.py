"""Evaluation data sources: FineWeb-edu through a local datasets-server double, the corpus, user files."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from sn29_growth.corpus import Sample
from sn29_growth.eval.data import (
    DataSourceError,
    FileSource,
    FineWebSource,
    HttpPolicy,
    LocalSource,
    datasets_server_reachable,
    make_source,
    sample_key,
)

FIXTURES = Path(__file__).parent / "data" / "datasets_server"
DATASET = "HuggingFaceFW/fineweb-edu-score-2"


class FakeDatasetsServer:
    """Serves /size and /rows from the hand-written fixtures; injects 5xx answers and stalls on demand."""

    def __init__(self) -> None:
        self.size = json.loads((FIXTURES / "size.json").read_text())
        self.rows = {
            p.stem.removeprefix("rows_"): json.loads(p.read_text()) for p in FIXTURES.glob("rows_*.json")
        }
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.fail_next: list[int] = []  # statuses answered (with an {"error"} body) before serving normally
        self.stall_next = 0  # requests that sleep ``stall_s`` before answering
        self.stall_s = 1.0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, h: BaseHTTPRequestHandler, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append((parts.path, query))
            stall = self.stall_next > 0
            self.stall_next -= stall
            status = self.fail_next.pop(0) if self.fail_next and not stall else None
        if stall:
            time.sleep(self.stall_s)
        if status is not None:
            return self._send(h, status, json.loads((FIXTURES / "error_503.json").read_text()))
        if query.get("dataset") != DATASET:
            return self._send(h, 404, {"error": "The dataset does not exist."})
        if parts.path == "/size":
            return self._send(h, 200, self.size)
        if parts.path == "/rows":
            page = self.rows.get(query.get("config", ""))
            if page is None or query.get("split") != "train":
                return self._send(h, 404, json.loads((FIXTURES / "error_404.json").read_text()))
            offset, length = int(query["offset"]), int(query["length"])
            if length > 100:
                return self._send(h, 422, {"error": "Parameter 'length' must not be greater than 100"})
            out = dict(page, rows=page["rows"][offset : offset + length], num_rows_per_page=100)
            return self._send(h, 200, out)
        return self._send(h, 404, {"error": "Not Found"})

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    s = FakeDatasetsServer()
    yield s
    s.close()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fineweb(server, tmp_path, **kw) -> FineWebSource:
    kw.setdefault("policy", HttpPolicy(timeout_s=2.0, retries=3, backoff_s=0.5))
    kw.setdefault("sleep", Sleeps())
    return FineWebSource(endpoint=server.url, cache_dir=tmp_path / "cache", rows_per_page=2, **kw)


def all_fixture_rows() -> dict[str, str]:
    out = {}
    for p in FIXTURES.glob("rows_*.json"):
        config = p.stem.removeprefix("rows_")
        for r in json.loads(p.read_text())["rows"]:
            out[f"{config}/{r['row_idx']}"] = r["row"]["text"]
    return out


# ------------------------------------------------------------------------------------------ fineweb


def test_fineweb_samples_are_fixture_rows_chosen_by_seed(server, tmp_path):
    src = fineweb(server, tmp_path)
    assert [d.config for d in src.dumps()] == ["CC-MAIN-2013-20", "CC-MAIN-2024-10"]  # "default" skipped
    a = src.samples(5, seed=7)
    truth = all_fixture_rows()
    assert len(a) == 5 and len({s.id for s in a}) == 5
    assert all(truth[s.id] == s.text for s in a)
    assert all(q.get("config") != "default" for p, q in server.requests if p == "/rows")
    assert all(q["length"] == "2" for p, q in server.requests if p == "/rows")

    again = fineweb(server, tmp_path / "other").samples(5, seed=7)
    assert again == a  # same seed, fresh cache: same samples
    picks = {
        tuple(s.id for s in fineweb(server, tmp_path / f"s{seed}").samples(3, seed)) for seed in range(6)
    }
    assert len(picks) > 1  # the seed decides


def test_fineweb_cache_serves_without_the_server(server, tmp_path, monkeypatch):
    first = fineweb(server, tmp_path).samples(4, seed=3)
    n = len(server.requests)
    assert n >= 2
    assert fineweb(server, tmp_path).samples(4, seed=3) == first
    assert len(server.requests) == n  # every page came from the disk cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fineweb(server, tmp_path).samples(4, seed=3) == first
    with pytest.raises(DataSourceError, match="HF_HUB_OFFLINE"):
        fineweb(server, tmp_path / "empty").samples(4, seed=3)


def test_fineweb_retries_5xx_with_backoff(server, tmp_path):
    server.fail_next = [503, 500]
    src = fineweb(server, tmp_path)
    assert len(src.samples(2, seed=1)) == 2
    assert src.sleep == [0.5, 1.0]  # exponential backoff between the three /size attempts
    assert server.count("/size") == 3


def test_fineweb_retries_a_stalled_response(server, tmp_path):
    server.stall_next, server.stall_s = 1, 1.5
    src = fineweb(server, tmp_path, policy=HttpPolicy(timeout_s=0.3, retries=2, backoff_s=0.0))
    t0 = time.monotonic()
    assert len(src.samples(2, seed=1)) == 2
    assert time.monotonic() - t0 < 1.4  # the stall was cut off by the timeout, not waited out
    assert server.count("/size") == 2


def test_fineweb_gives_up_after_bounded_retries(server, tmp_path):
    server.fail_next = [503] * 10
    src = fineweb(server, tmp_path, policy=HttpPolicy(timeout_s=2.0, retries=2, backoff_s=0.1))
    with pytest.raises(DataSourceError, match=r"gave up after 3 attempts .*HTTP 503: The server is busier"):
        src.samples(2, seed=1)
    assert server.count("/size") == 3
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.json"))


def test_fineweb_client_errors_are_not_retried(server, tmp_path):
    src = fineweb(server, tmp_path)
    with pytest.raises(DataSourceError, match="HTTP 404: The config 'CC-MAIN-1999-01' does not exist"):
        src.page("CC-MAIN-1999-01", 0, 2)
    assert server.count("/rows") == 1 and src.sleep == []
    other = FineWebSource(dataset="someone/else", endpoint=server.url, policy=HttpPolicy(retries=3))
    with pytest.raises(DataSourceError, match="HTTP 404"):
        other.dumps()


def test_fineweb_rejects_malformed_responses(server, tmp_path):
    server.rows["CC-MAIN-2024-10"] = {"rows": [{"row_idx": 0, "row": {"content": "no text field"}}]}
    src = fineweb(server, tmp_path)
    with pytest.raises(DataSourceError, match="malformed /rows"):
        src.page("CC-MAIN-2024-10", 0, 1)
    server.size = {"size": {"splits": [{"config": "default", "split": "train", "num_rows": 5}]}}
    with pytest.raises(DataSourceError, match="no usable config"):
        fineweb(server, tmp_path / "b").dumps()


def test_fineweb_competition_name_and_page_bounds():
    assert FineWebSource(dataset="fineweb2").dataset == DATASET
    with pytest.raises(ValueError, match="rows_per_page"):
        FineWebSource(rows_per_page=101)
    with pytest.raises(ValueError, match="timeout_s"):
        HttpPolicy(timeout_s=0)


def test_reachability_probe(server, monkeypatch):
    assert datasets_server_reachable(server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not datasets_server_reachable(server.url)


# ------------------------------------------------------------------------------------ local / files


def test_local_source_is_the_held_out_corpus(corpus):
    src = LocalSource()
    assert src.offline
    assert src.samples(10_000, seed=0) == corpus.held_out
    a, b = src.samples(8, seed=1), src.samples(8, seed=2)
    assert len(a) == 8 and set(a) <= set(corpus.held_out)
    assert a == src.samples(8, seed=1) and a != b
    with pytest.raises(ValueError):
        src.samples(0, seed=0)


def test_file_sources(tmp_path):
    txt = tmp_path / "texts.txt"
    txt.write_text("first text\n\n  second text  \nthird\n", encoding="utf-8")
    assert FileSource(txt).samples(10, 0) == (
        Sample("texts.txt:1", "first text"),
        Sample("texts.txt:3", "  second text  "),
        Sample("texts.txt:4", "third"),
    )
    jl = tmp_path / "rows.jsonl"
    jl.write_text(
        json.dumps({"text": "a\nb", "x": 1}) + "\n" + json.dumps({"text": "c"}) + "\n", encoding="utf-8"
    )
    assert [s.text for s in make_source(str(jl)).samples(5, 0)] == ["a\nb", "c"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(DataSourceError, match="bad.jsonl:1: no string 'text'"):
        FileSource(bad).samples(1, 0)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataSourceError, match="no samples"):
        FileSource(empty).samples(1, 0)


def test_make_source_dispatch(tmp_path):
    assert isinstance(make_source("local"), LocalSource)
    fw = make_source("fineweb", cache_dir=tmp_path, rows_per_page=25)
    assert isinstance(fw, FineWebSource) and fw.dataset == DATASET and fw.rows_per_page == 25
    with pytest.raises(ValueError, match="not 'local', 'fineweb'"):
        make_source(str(tmp_path / "missing.txt"))


def test_sample_key_changes_with_text():
    assert sample_key(Sample("a", "x")) == sample_key(Sample("a", "x"))
    assert sample_key(Sample("a", "x")) != sample_key(Sample("a", "y"))
    assert sample_key(Sample("a", "x")).startswith("a@")
