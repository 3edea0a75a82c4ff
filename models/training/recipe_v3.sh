#!/usr/bin/env sh
# How the default model v3 is made (see models/MODEL_CARD.md). Every stage resumes where it
# stopped, so the script can be run again after any interruption:
#   models/training/recipe_v3.sh PATH/TO/pop909 WORK_DIR [STAGE] [START]
# STAGE: prepare | compare | main | continue | eval | all (default: prepare, main, eval).
# Keep WORK_DIR outside the checkout: a run of several hours lives there.
#
# prepare  POP909 001-800 with tokenizer v2 (annotated chords, melody/accompaniment parts).
# compare  short runs at equal tokens or equal compute that chose precision and size:
#          6x256 fp32 vs bf16, and 6x256 vs 8x384 (bf16), each with its own folder.
# main     6 layers x 256 from scratch, 4,096-token windows, 16,384 tokens a step, 4,000 steps
#          (65.5 M tokens), bf16 autocast, torch.compile; 20 % fill-in-the-middle, 20 % part
#          infilling, 20 % plain piano (parts merged, chords recognised), transposition +-5.
# continue the end of main's schedule from committed weights, for when main's folder was lost
#          (the weights file has no optimizer moments): START (default: the bundled model, copied
#          into the folder once so a later commit does not change the start), a fresh 50-step
#          warm-up to 3.7e-4 (main's rate at step 3,000), a cosine to 1.5e-4 (main's last rate)
#          over 1,500 steps (24.6 M tokens: 61.7 M in all with main's 37.1 M), a new data order.
# eval     `pianomuse eval` of the best checkpoint on the validation songs.
set -eu
POP909="$1"
WORK="$2"
STAGE="${3:-default}"
START="${4:-models/pianomuse-v3-pop909.safetensors}"
DATA="$WORK/pop909_v2"
MIX="--fim-rate 0.2 --part-rate 0.2 --plain-rate 0.2 --max-transpose 5"

# Train into folder $1 with the remaining options; resume when a checkpoint is there.
run() {
  out="$1"
  shift
  resume=""
  [ -f "$out/last.pt" ] && resume="--resume"
  # shellcheck disable=SC2086
  uv run pianomuse train --data-path "$DATA" --output-dir "$out" --device cpu $MIX $resume "$@"
}

prepare() {
  [ -f "$DATA/manifest.json" ] || uv run pianomuse prepare --data-path "$POP909" --out "$DATA" --workers 2
}

compare() {
  short="--preset small --max-seq-len 4096 --batch-size 2 --grad-accum 2 --lr 1.5e-3 --warmup-steps 30 --eval-every 50 --eval-batches 16 --save-every 25 --seed 3"
  # shellcheck disable=SC2086
  run "$WORK/compare/fp32" $short --max-steps 150 --precision fp32
  # shellcheck disable=SC2086
  run "$WORK/compare/bf16" $short --max-steps 150 --precision bf16 --compile
  # Equal compute as equal time: 8 x 384 trains 1.7x slower a token than 6 x 256 on one CPU
  # thread (bf16, compiled: 957 against 1,610 tokens/s), so it gets 89 of the 150 steps.
  # shellcheck disable=SC2086
  run "$WORK/compare/8x384" $short --max-steps 89 --n-layer 8 --n-embd 384 --lr 1e-3 \
    --precision bf16 --compile
}

main() {
  run "$WORK/main" --preset small --max-seq-len 4096 --batch-size 2 --grad-accum 2 \
    --lr 1.5e-3 --min-lr-ratio 0.1 --warmup-steps 200 --max-steps 4000 \
    --eval-every 250 --eval-batches 16 --save-every 50 --precision bf16 --compile --seed 3
}

cont() {
  mkdir -p "$WORK/continue"
  [ -f "$WORK/continue/start.safetensors" ] || cp "$START" "$WORK/continue/start.safetensors"
  run "$WORK/continue" --pretrained-model "$WORK/continue/start.safetensors" --max-seq-len 4096 \
    --batch-size 2 --grad-accum 2 --lr 3.7e-4 --min-lr-ratio 0.4 --warmup-steps 50 \
    --max-steps 1500 --eval-every 250 --eval-batches 16 --save-every 50 --precision bf16 \
    --compile --seed 4
}

evaluate() {
  uv run pianomuse eval --model "$WORK/main/best.safetensors" --data-path "$DATA" \
    --max-seq-len 4096 --batch-size 2 --json "$WORK/eval.json"
}

case "$STAGE" in
  prepare) prepare ;;
  compare) prepare && compare ;;
  main) prepare && main ;;
  continue) prepare && cont ;;
  eval) evaluate ;;
  all) prepare && compare && main && evaluate ;;
  default) prepare && main && evaluate ;;
  *) echo "unknown stage $STAGE (prepare, compare, main, continue, eval, all)" >&2 && exit 2 ;;
esac
