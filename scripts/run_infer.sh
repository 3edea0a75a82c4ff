#!/usr/bin/env sh
# One-click continuation: 8 bars, 4 candidates, written to ./candidates.
#   scripts/run_infer.sh CONTEXT.mid [extra pianomuse complete options, e.g. --model M]
# Choose the Python with uv's own settings, e.g. UV_PYTHON=3.12 scripts/run_infer.sh ...
set -eu
CONTEXT="${1:-examples/pop909_099_opening.mid}"
[ $# -gt 0 ] && shift
exec uv run pianomuse complete "$CONTEXT" --bars 8 --candidates 4 -o candidates "$@"
