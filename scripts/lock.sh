#!/usr/bin/env bash
# Resolve requirements-dev.in into requirements.lock in a scratch virtualenv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -r "$ROOT/requirements-dev.in"
"$tmp/venv/bin/pip" freeze --all --exclude-editable | grep -v '^-e ' >"$ROOT/requirements.lock"
rm -rf "$tmp"
echo "wrote requirements.lock"
