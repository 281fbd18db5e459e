"""A real OpenID provider in a process of its own, for tests/test_oidc.py.

The provider is oidc-provider-mock: a standards-compliant OpenID provider built on Authlib's
server side (discovery, JWKS, RS256-signed ID tokens carrying the request's nonce, the
authorization code grant with PKCE). Its authorization page is a form that signs in
whichever subject is posted to it; ``--user-claims`` gives subjects their claims.

``python -m tests.oidcprovider --port 0 --require-nonce --user-claims '{"sub": "ann", ...}'``
serves it, from the repository's root, on werkzeug's threaded server, and prints
``oidc provider listening on <url>`` once it listens; SIGTERM (or Ctrl-C) stops it. Beside
the provider's routes it answers ``GET /_test/token-requests``: the form of every token
request so far, oldest first, as JSON (``{field: [values]}``, as ``parse_qs`` reads a
form), so that a test can check the PKCE verifier a client sent.

The tests' side is `OidcProvider`: it starts that command, waits for the line and then for
the discovery document, and stops the process. The test process so never imports Authlib's
server side (nor its deprecation warnings); only the provider's process does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import select
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN_REQUESTS = "/_test/token-requests"
ANNOUNCEMENT = "oidc provider listening on "
START_TIMEOUT = 30.0  # seconds: a slow machine's Python start-up and imports


# -- the tests' side --------------------------------------------------------------------------

@dataclass(frozen=True)
class User:
    """A subject the provider knows, with its claims (``email``, ``email_verified``, ...)."""

    sub: str
    claims: dict[str, Any] = field(default_factory=dict)

    def argument(self) -> str:
        """The ``--user-claims`` JSON of this user."""
        return json.dumps({"sub": self.sub, **self.claims})


class OidcProvider:
    """``python -m tests.oidcprovider`` on a free port of localhost, for as long as a test
    (a fixture) needs it. Its log (stderr) is written to ``log``."""

    def __init__(self, log: Path, users: Sequence[User] = (), *,
                 require_nonce: bool = True) -> None:
        self.log = log
        self.args = [sys.executable, "-m", "tests.oidcprovider", "--port", "0"]
        if require_nonce:
            self.args.append("--require-nonce")
        for user in users:
            self.args += ["--user-claims", user.argument()]
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> OidcProvider:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            self.url = self._announced()
            # It listened before it printed: its discovery document answers at once.
            metadata = httpx.get(self.url + "/.well-known/openid-configuration", timeout=10)
            assert metadata.status_code == 200, self._failure("no discovery document")
            assert metadata.json()["issuer"] == self.url, metadata.text
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def _announced(self) -> str:
        """The URL in the process's first line of output (waited for, up to a deadline)."""
        process = self.process
        assert process is not None
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        assert ready, self._failure(f"nothing announced in {START_TIMEOUT:.0f} s")
        line = process.stdout.readline()  # all of it: the process flushes it whole
        assert line.startswith(ANNOUNCEMENT), self._failure(f"it said {line!r}")
        return line[len(ANNOUNCEMENT):].strip()

    def _failure(self, what: str) -> str:
        code = None if self.process is None else self.process.poll()
        status = "running" if code is None else f"exited with {code}"
        return f"the OpenID provider did not start ({what}; {status}):\n{self.log.read_text()}"

    def token_requests(self) -> list[dict[str, list[str]]]:
        """The forms of the token requests the provider has received, oldest first."""
        response = httpx.get(self.url + TOKEN_REQUESTS, timeout=10)
        assert response.status_code == 200, response.text
        requests: list[dict[str, list[str]]] = response.json()
        return requests

    def stop(self, check: bool = True) -> None:
        """SIGTERM, and wait for it to end; with `check`, it must end well (status 0)."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                process.terminate()
            try:
                code = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError("the OpenID provider ignored SIGTERM") from None
        finally:
            if process.stdout is not None:
                process.stdout.close()
        if check:
            assert code == 0, f"the OpenID provider exited with {code}:\n{self.log.read_text()}"

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop(check=et is None)


# -- the provider's process -------------------------------------------------------------------

class Recorder:
    """WSGI middleware: keeps each token request's form, and serves them as JSON."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.forms: list[dict[str, list[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO")
        if path == TOKEN_REQUESTS and environ.get("REQUEST_METHOD") == "GET":
            with self.lock:
                body = json.dumps(self.forms).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if path == "/oauth2/token":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            with self.lock:
                self.forms.append(parse_qs(body.decode()))
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def _users(arguments: Sequence[str]) -> list[Any]:
    from oidc_provider_mock import User as ProviderUser

    users = []
    for argument in arguments:
        claims = json.loads(argument)
        if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str):
            raise SystemExit(f'--user-claims needs a JSON object with a "sub": {argument}')
        sub = claims.pop("sub")
        users.append(ProviderUser(sub=sub, claims=claims))
    return users


def _stop(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.oidcprovider",
        description="Serve a real OpenID provider for tests (see tests/oidcprovider.py).")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=9400, help="0: a free port")
    parser.add_argument("--require-nonce", action="store_true",
                        help="refuse authorization requests without a nonce")
    parser.add_argument("--user-claims", action="append", default=[], metavar="JSON",
                        help='a user: {"sub": ..., claims...} (repeatable)')
    args = parser.parse_args(argv)
    # Authlib deprecates the APIs of its own that the provider uses (authlib.jose, ...), and
    # asks for its warnings always when imported: silenced after that, in this process.
    import authlib.deprecate  # noqa: F401

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from oidc_provider_mock import app as provider_app
    from werkzeug.serving import make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = provider_app(require_nonce=args.require_nonce, user_claims=_users(args.user_claims))
    server = make_server(args.host, args.port, Recorder(app), threaded=True)
    signal.signal(signal.SIGTERM, _stop)
    print(f"{ANNOUNCEMENT}http://{args.host}:{server.server_port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.05)
    server.server_close()


if __name__ == "__main__":
    main()
