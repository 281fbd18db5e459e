"""gunicorn reads this file when run from the repository: Brook's settings (see
src/brook/gunicorn_conf.py), so `gunicorn 'brook:create_app()'` serves like `brook serve`."""

from gevent import monkey

monkey.patch_all()  # before anything imports ssl, socket or threading

from brook.gunicorn_conf import *  # noqa: E402, F403
