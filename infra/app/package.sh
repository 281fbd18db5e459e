#!/bin/sh
# azd runs this before it packages the web service (azure.yaml: services.web.hooks.prepackage).
# It copies what App Service needs to build and run Brook, and nothing else, into
# build/appservice/ (services.web.dist): no .env, instance/, tests or caches get uploaded.
# App Service's build (Oryx, SCM_DO_BUILD_DURING_DEPLOYMENT) then runs
# `pip install -r requirements.txt`, and requirements.txt says `.`: that is `pip install .`.
set -eu
cd "$(dirname "$0")/../.."
out="${1:-build/appservice}"  # azd passes nothing; the tests pass a scratch folder
rm -rf "$out"
mkdir -p "$out"
cp pyproject.toml README.md gunicorn.conf.py "$out/"
cp -R src "$out/src"
find "$out" \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +
printf '%s\n' '# Written by infra/app/package.sh for App Service: install Brook itself.' '.' \
    > "$out/requirements.txt"
echo "Packaged Brook for App Service in $out"
