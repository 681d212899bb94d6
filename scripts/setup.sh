#!/usr/bin/env bash
# Create .venv (once) and install introvae with its test extras into it, torch pinned by constraints.txt.
# Sourced by demo.sh and test.sh; safe to run again (pip skips what is already there).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [ ! -x "$root/.venv/bin/python" ]; then
    "$python" -m venv "$root/.venv"
fi
"$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$root/constraints.txt" -e "$root[test]"
