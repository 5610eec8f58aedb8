"""A local HTTP server speaking the Hub's read API (and repo create/settings) over a :class:`LocalHub` folder.

For tests and offline demos of the real huggingface_hub code paths: point ``HF_ENDPOINT`` or
``HfHubClient(endpoint=server.url)`` at it. It serves what huggingface_hub 2.x calls:

- ``GET /api/models/{repo}[/revision/{rev}]`` (``?blobs=true`` adds sizes, blob ids and LFS metadata),
- ``GET /api/models/{repo}/tree/{rev}`` (``snapshot_download``'s listing),
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: regular files answered directly (``ETag`` = git blob id,
  ``X-Repo-Commit``, ``Content-Length``); LFS files redirected (302, ``X-Linked-Etag`` = sha256,
  ``X-Linked-Size``) to a "CDN" URL on another host name of the same server, which honours ``Range``,
- ``POST /api/repos/create`` and ``PUT /api/models/{repo}/settings``,
- the same read routes for dataset repositories (``/api/datasets/{repo}...``, ``/datasets/{repo}/resolve/...``),
  which live in the same :class:`LocalHub` namespace as models,

with :class:`fake_hub_faults.Faults` injected, and every request recorded.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, quote, unquote, urlsplit

from fake_hub_faults import FaultCounter, Faults, served_chunks

from sn29_growth.hub.local import LocalFile, LocalHub, RequestKind
from sn29_growth.hub.protocol import RepoNotFound, RevisionNotFound

logger = logging.getLogger(__name__)

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_INFO = re.compile(rf"^/api/(?:models|datasets)/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(rf"^/api/(?:models|datasets)/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_SETTINGS = re.compile(rf"^/api/models/{_REPO}/settings$")
_RESOLVE = re.compile(rf"^/(?:datasets/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(rf"^/_cdn/{_REPO}/(?P<rev>[0-9a-f]{{40}})/(?P<path>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str  # URL path, percent-decoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


class _Reply(Exception):
    """Answer the current request with an error status."""

    def __init__(self, status: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class HubHTTPServer:
    """Serve ``root`` (a :class:`LocalHub` layout) on ``http://127.0.0.1:{port}`` in a background thread.

    LFS downloads redirect to ``http://{cdn_host}:{port}/_cdn/...`` (default ``localhost``: another host name
    for the same server, so clients treat it as a CDN and drop credentials). Use as a context manager.
    """

    def __init__(self, root: Path, *, faults: Faults = Faults(), cdn_host: str = "localhost") -> None:
        self.hub = LocalHub(root)
        self.cdn_host = cdn_host
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self.set_faults(faults)
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_faults(self, faults: Faults) -> None:
        self._faults = FaultCounter(faults)

    @property
    def faults(self) -> Faults:
        return self._faults.faults

    def start(self) -> HubHTTPServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HubHTTPServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def requested(self, method: str | None = None, pattern: str = "") -> list[RecordedRequest]:
        """Recorded requests with ``method`` (any if None) whose path contains ``pattern``."""
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method) and pattern in r.path]

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            hub_server = server

        return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        logger.debug("hub-http: error while answering %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub_server: HubHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("hub-http: " + format, *args)

    # --- dispatch ---

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        srv = self.hub_server
        url = urlsplit(self.path)
        path = unquote(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        srv._record(
            RecordedRequest(
                method=method,
                path=path,
                query=parse_qs(url.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
        )
        kind: RequestKind = "file" if ("/resolve/" in path or path.startswith("/_cdn/")) else "info"
        try:
            failure = srv._faults.next_failure(kind)
            if failure == "timeout":
                time.sleep(srv.faults.stall_s)
            if failure is not None:
                raise _Reply(503, "Service unavailable (injected)")
            self._route(method, path, url.query, body)
        except _Reply as reply:
            self._send_error(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, method: str, path: str, query: str, body: bytes) -> None:
        if method in ("GET", "HEAD") and (m := _INFO.match(path)):
            return self._model_info(m["repo"], m["rev"] or "main", query, head=method == "HEAD")
        if method == "GET" and (m := _TREE.match(path)):
            return self._tree(m["repo"], m["rev"], m["path"] or "")
        if method in ("GET", "HEAD") and (m := _RESOLVE.match(path)):
            return self._resolve(m["repo"], m["rev"], m["path"], head=method == "HEAD")
        if method in ("GET", "HEAD") and (m := _CDN.match(path)):
            return self._cdn(m["repo"], m["rev"], m["path"], head=method == "HEAD")
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(body)
        if method == "PUT" and (m := _SETTINGS.match(path)):
            return self._settings(m["repo"], body)
        raise _Reply(404, f"no route for {method} {path}")

    # --- helpers ---

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"", *, head: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _send_json(self, obj: object, status: int = 200, *, head: bool = False) -> None:
        self._send(status, {"Content-Type": "application/json"}, json.dumps(obj).encode(), head=head)

    def _send_error(self, reply: _Reply) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": str(reply)}
        if reply.error_code:
            headers["X-Error-Code"] = reply.error_code
        self._send(
            reply.status, headers, json.dumps({"error": str(reply)}).encode(), head=self.command == "HEAD"
        )

    def _commit(self, repo_id: str, revision: str) -> str:
        srv = self.hub_server
        if repo_id in srv.faults.not_found:
            raise _Reply(404, f"Repository {repo_id} not found", "RepoNotFound")
        try:
            return srv.hub.resolve(repo_id, revision)
        except ValueError as exc:
            raise _Reply(400, str(exc)) from None
        except RevisionNotFound:
            raise _Reply(404, f"Revision {revision} not found", "RevisionNotFound") from None
        except RepoNotFound:
            raise _Reply(404, f"Repository {repo_id} not found", "RepoNotFound") from None

    def _file(self, repo_id: str, revision: str, path: str) -> tuple[str, LocalFile]:
        sha = self._commit(repo_id, revision)
        try:
            f = self.hub_server.hub.file(repo_id, sha, path)
        except ValueError:
            f = None
        if f is None:
            raise _Reply(404, f"Entry {path} not found", "EntryNotFound")
        return sha, f

    # --- endpoints ---

    def _model_info(self, repo_id: str, revision: str, query: str, *, head: bool) -> None:
        sha = self._commit(repo_id, revision)
        blobs = parse_qs(query).get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for f in self.hub_server.hub.files(repo_id, sha):
            entry: dict[str, object] = {"rfilename": f.meta.path}
            if blobs:
                entry.update(size=f.meta.size, blobId=f.git_oid)
                if f.lfs:
                    entry["lfs"] = {"size": f.meta.size, "sha256": f.meta.sha256, "pointerSize": 134}
            siblings.append(entry)
        info = {
            "_id": sha[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": sha,
            "private": self.hub_server.hub.is_private(repo_id),
            "disabled": False,
            "gated": False,
            "tags": [],
            "siblings": siblings,
        }
        self._send_json(info, head=head)

    def _tree(self, repo_id: str, revision: str, prefix: str) -> None:
        sha = self._commit(repo_id, revision)
        entries = []
        for f in self.hub_server.hub.files(repo_id, sha):
            if prefix and not f.meta.path.startswith(prefix.rstrip("/") + "/"):
                continue
            entry: dict[str, object] = {
                "type": "file",
                "oid": f.git_oid,
                "size": f.meta.size,
                "path": f.meta.path,
            }
            if f.lfs:
                entry["lfs"] = {"oid": f.meta.sha256, "size": f.meta.size, "pointerSize": 134}
            entries.append(entry)
        self._send_json(entries)

    def _resolve(self, repo_id: str, revision: str, path: str, *, head: bool) -> None:
        sha, f = self._file(repo_id, revision, path)
        common = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if f.lfs:
            location = (
                f"http://{self.hub_server.cdn_host}:{self.hub_server.port}/_cdn/{repo_id}/{sha}/{quote(path)}"
            )
            headers = {
                **common,
                "ETag": f'"{f.git_oid}"',
                "X-Linked-Etag": f'"{f.meta.sha256}"',
                "X-Linked-Size": str(f.meta.size),
                "Location": location,
            }
            self._send(302, headers, head=head)
            return
        self._send_file(f, {**common, "ETag": f'"{f.git_oid}"'}, head=head)

    def _cdn(self, repo_id: str, sha: str, path: str, *, head: bool) -> None:
        _, f = self._file(repo_id, sha, path)
        self._send_file(f, {"ETag": f'"{f.meta.sha256}"'}, head=head)

    def _send_file(self, f: LocalFile, headers: dict[str, str], *, head: bool) -> None:
        faults = self.hub_server.faults
        size = min(f.meta.size, faults.short.get(f.meta.path, f.meta.size))
        start, status = 0, 200
        m = _RANGE.match(self.headers.get("Range") or "")
        if m and faults.ranges and not m[2]:
            start = int(m[1])
            if start >= size:
                raise _Reply(416, "Range not satisfiable")
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{size - 1}/{size}"}
        headers = {**headers, "Content-Type": "application/octet-stream", "Content-Length": str(size - start)}
        self._send(status, headers, head=True)
        if head:
            return
        cut = faults.cut_at.get(f.meta.path)
        pos = start
        for chunk in served_chunks(f.local_path, f.meta.path, faults, start):
            if cut is not None and start < cut <= pos + len(chunk):
                self.wfile.write(chunk[: cut - pos])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)
            pos += len(chunk)

    def _create_repo(self, body: bytes) -> None:
        payload = json.loads(body or b"{}")
        repo_id = f"{payload.get('organization')}/{payload.get('name')}"
        private = payload.get("visibility", "public") == "private" or bool(payload.get("private"))
        try:
            created = self.hub_server.hub.create_repo(repo_id, private=private)
        except ValueError as exc:
            raise _Reply(400, str(exc)) from None
        url = f"http://127.0.0.1:{self.hub_server.port}/{repo_id}"
        if not created:
            raise _Reply(409, "You already created this model repo")
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _settings(self, repo_id: str, body: bytes) -> None:
        payload = json.loads(body or b"{}")
        if "visibility" in payload:
            try:
                self.hub_server.hub.set_private(repo_id, payload["visibility"] == "private")
            except RepoNotFound:
                raise _Reply(404, f"Repository {repo_id} not found", "RepoNotFound") from None
        self._send_json({})
