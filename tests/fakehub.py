"""A stand-in for the Hugging Face hub over real HTTP: it serves one model's files from a
folder, so that huggingface_hub's own download code runs against it (`HF_ENDPOINT`).

It answers what a download asks: the model's file list with sizes (`GET /api/models/<repo>`),
each file's metadata (`HEAD /<repo>/resolve/<revision>/<file>`: the commit, ETag and size)
and its bytes (`GET` of the same), sent in small pieces. A test can hold a file's bytes
until it releases them (`hold`), and make the hub fail (`fail`: every request answered with
that HTTP status). `requests` records each request's method and path.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PIECE = 4096  # bytes per write


class FakeHub:
    def __init__(self, repo: str, folder: Path) -> None:
        self.repo, self.folder = repo, folder
        self.files = {path.name: path.read_bytes() for path in sorted(folder.iterdir())
                      if path.is_file()}
        self.hold: dict[str, threading.Event] = {}  # file -> released when set
        self.holding: dict[str, threading.Event] = {}  # file -> set while its GET waits
        self.fail: int | None = None
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub.answer(self, body=True)

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def held(self, name: str) -> threading.Event:
        """Hold `name`'s bytes until the returned event is set (`holding[name]` is set
        while a download of it waits)."""
        self.hold[name] = threading.Event()
        self.holding[name] = threading.Event()
        return self.hold[name]

    def gets(self, name: str) -> int:
        return sum(1 for method, path in self.requests
                   if method == "GET" and path.endswith("/" + name))

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append((handler.command, path))
        if self.fail is not None:
            self.send(handler, self.fail, b'{"error": "the hub is having a bad day"}', body)
            return
        if path in (f"/api/models/{self.repo}", f"/api/models/{self.repo}/revision/main"):
            info = {"id": self.repo, "sha": COMMIT, "siblings": [
                {"rfilename": name, "size": len(data)} for name, data in self.files.items()]}
            self.send(handler, 200, json.dumps(info).encode(), body)
            return
        prefix = f"/{self.repo}/resolve/"
        revision, _, name = path.removeprefix(prefix).partition("/")
        if not path.startswith(prefix) or revision not in (COMMIT, "main") \
                or name not in self.files:
            self.send(handler, 404, b'{"error": "Entry not found"}', body,
                      {"X-Error-Code": "EntryNotFound"})
            return
        data = self.files[name]
        headers = {"X-Repo-Commit": COMMIT,
                   "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        if not body:
            self.send(handler, 200, data, False, headers)
            return
        if name in self.hold:
            self.holding[name].set()
            self.hold[name].wait(60)
        self.send(handler, 200, data, True, headers)

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, data: bytes, body: bool,
             headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Content-Type", "application/json" if data[:1] == b"{"
                            else "application/octet-stream")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if body:
            try:
                for start in range(0, len(data), PIECE):
                    handler.wfile.write(data[start:start + PIECE])
                    handler.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the downloader went away
                handler.close_connection = True

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for event in self.hold.values():
            event.set()
        self.server.shutdown()
        self.server.server_close()
