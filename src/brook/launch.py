"""The `brook` command's entry point.

`brook serve` runs gunicorn's gevent workers. gevent must patch the standard library before
anything imports it (ssl, socket, select, threading), or those early importers keep blocking
versions: so this module patches first and imports Brook after.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["serve"] and "--dev" not in args:
        from gevent import monkey

        monkey.patch_all()
    from .cli import main as cli

    cli()
