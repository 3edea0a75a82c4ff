#!/usr/bin/env sh
# How the bundled version-2 model is made, on one 2-core CPU (see models/MODEL_CARD.md):
#   models/training/recipe_v2.sh PATH/TO/pop909 [WORK_DIR]
# 1. prepare POP909 (800 songs, beats and chord annotations beside them) with tokenizer v2;
# 2. train the small preset from the version-1 model (its blocks kept, its vocabulary
#    re-initialised) on whole-song windows of 4,096 tokens with the v2 training mix.
# The bundled run was started with --max-steps 2400, resumed with --resume --max-steps 1500
# after step 400 and with --resume --max-steps 1200 after step 600 (the cosine schedule
# shortened each time); this recipe runs its final length.
set -eu
POP909="$1"
WORK="${2:-runs/v2}"
uv run pianomuse prepare --data-path "$POP909" --out "$WORK/pop909_v2" --workers 2
exec uv run pianomuse train --data-path "$WORK/pop909_v2" --output-dir "$WORK/run" \
  --preset small --pretrained-model models/pianomuse-small-pop909.safetensors \
  --max-seq-len 4096 --batch-size 2 --lr 1e-3 --warmup-steps 100 --max-steps 1200 \
  --eval-every 200 --eval-batches 8 --save-every 100 \
  --fim-rate 0.2 --part-rate 0.2 --plain-rate 0.2 --max-transpose 5 --seed 2 --device cpu
