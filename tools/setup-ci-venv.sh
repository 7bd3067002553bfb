#!/usr/bin/env bash
# Creates .venv-ci with the pinned Python packages the tests use (real XLA
# through jax for tools/xla_check.py). Idempotent: an up-to-date venv is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
req=tools/requirements-ci.txt
stamp=.venv-ci/.requirements
if [ -x .venv-ci/bin/python ] && cmp -s "$req" "$stamp"; then
    exit 0
fi
echo "setting up .venv-ci from $req ..."
python3 -m venv .venv-ci
.venv-ci/bin/pip install -q --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
