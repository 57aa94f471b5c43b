#!/usr/bin/env bash
# The Gmail API emulator's own test suite (starts its own emulator on a random port).
set -euo pipefail
cd "$(dirname "$0")/../gmail-emulator"
PYTHONDONTWRITEBYTECODE=1 exec python3 -m pytest -q -p no:cacheprovider test_emulator.py
