"""The `brook` command's entry point, outside the `brook` package on purpose.

`brook serve` runs gunicorn's gevent workers, and gevent must patch the standard library
(ssl, socket, select, threading) before anything imports it: a module that imported ssl first
keeps the unpatched one, and every TLS connection (to the model, PostgreSQL and Redis in
production) would block the worker. Importing any module of `brook` first runs
`brook/__init__.py`, which imports Flask, the Azure SDK and the openai client, and ssl with
them; so the command starts here, patches, and imports Brook after.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["serve"] and "--dev" not in args:
        from gevent import monkey

        monkey.patch_all()
    from brook.cli import main as cli

    cli()
