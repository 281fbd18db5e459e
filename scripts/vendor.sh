#!/usr/bin/env bash
# Vendor the browser libraries Brook's front end uses (no CDN, no build step).
# Installs pinned versions from npm into a temporary directory and copies their
# ES-module builds and licenses into src/brook/static/vendor/. The copied files
# are committed, so running the app never needs npm; rerun this only to upgrade
# (edit the pins below).
set -euo pipefail

MARKED_VERSION="18.2.1"
DOMPURIFY_VERSION="3.4.18"

command -v npm >/dev/null || { echo "vendor.sh: npm is required (only to refresh the vendored files)" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/src/brook/static/vendor"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm init -y >/dev/null
npm install --no-audit --no-fund --ignore-scripts --save-exact \
  "marked@$MARKED_VERSION" "dompurify@$DOMPURIFY_VERSION" >/dev/null

mkdir -p "$dest"
copy() { # copy SRC DEST, failing loudly if the package layout changed
  if [[ ! -f "$1" ]]; then
    echo "vendor.sh: expected file not found: $1" >&2
    exit 1
  fi
  cp "$1" "$2"
}

copy node_modules/marked/lib/marked.esm.js "$dest/marked.esm.js"
copy node_modules/marked/LICENSE "$dest/marked.LICENSE"
copy node_modules/dompurify/dist/purify.es.mjs "$dest/purify.es.mjs"
# DOMPurify is dual-licensed (Apache-2.0 OR MPL-2.0); keep both texts.
copy node_modules/dompurify/LICENSE "$dest/dompurify.LICENSE"
copy node_modules/dompurify/LICENSE-MPL "$dest/dompurify.LICENSE-MPL"

# Source maps are referenced by sourceMappingURL comments but not shipped;
# strip those comments so browsers don't request missing files.
sed -i.bak -e '/^\/\/# sourceMappingURL=/d' "$dest/marked.esm.js" "$dest/purify.es.mjs"
rm -f "$dest"/*.bak

cat > "$dest/VERSIONS" <<VERSIONS
marked $MARKED_VERSION (lib/marked.esm.js, LICENSE)
dompurify $DOMPURIFY_VERSION (dist/purify.es.mjs, LICENSE, LICENSE-MPL)
VERSIONS

echo "Vendored marked $MARKED_VERSION and dompurify $DOMPURIFY_VERSION into $dest"
