#!/usr/bin/env bash
# Set up everything (system packages, services' binaries, .venv) and run the whole test suite:
# lint, the import rules, unit tests, then integration tests against a real registry and QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# fsck.fat, sfdisk and friends are in /usr/sbin, not on a Debian user's PATH
export PATH="$PWD/.venv/bin:$PATH:/usr/sbin:/sbin"
ruff check .
lint-imports --no-cache  # the layering contracts in pyproject.toml
mypy                     # non-strict to start ([tool.mypy] in pyproject.toml)
python -m pytest -q -p no:cacheprovider "$@"
