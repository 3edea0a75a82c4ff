#!/usr/bin/env sh
# One-click training: prepares the MIDI folder (cached) and trains the `small` preset.
#   scripts/run_train.sh [MIDI_OR_PREPARED_DIR] [OUTPUT_DIR] [extra pianomuse train options]
# Choose the Python with uv's own settings, e.g. UV_PYTHON=3.12 scripts/run_train.sh ...
set -eu
DATA="${1:-tests/data}"
OUT="${2:-runs/small}"
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
exec uv run pianomuse train --data-path "$DATA" --output-dir "$OUT" --preset small "$@"
