#!/usr/bin/env bash
# lmms-eval with the `divot` model class, for real, on a local shapes-world task, checked against `divot eval`.
#
#   bash benchmarks/lmms_eval_local.sh
#
# 1. a separate venv with lmms-eval + this package (created when missing; lmms-eval's pins clash with the
#    project's, so it never goes into .venv): $LMMS_VENV, default .venv-lmms (git-ignored)
# 2. shapes-world clips with EgoSchema-format question files (`divot data shapes`), turned into the task's
#    documents (benchmarks/lmms_eval_tasks/shapes_egoschema.yaml)
# 3. `divot eval egoschema --mode ll` and `python -m lmms_eval --model divot ... --tasks shapes_egoschema_mcppl`
#    with the same model on the same clips
# 4. a compare step that writes benchmarks/results/lmms_eval_local.json and exits 1 unless the accuracies and
#    every question's prediction agree
#
# Settings (environment): LMMS_VENV, LMMS_EVAL_VERSION (0.7.3), WORK (a fresh temporary folder), NUM (40
# questions), SEED (shapes-world seed, 1234), SPLIT (held-out: colour / shape pairs the model never saw, so that
# not every answer is right; train), MODEL (shapes-tiny), DEVICE (cpu), RESULT
# (benchmarks/results/lmms_eval_local.json).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LMMS_VENV="${LMMS_VENV:-$REPO/.venv-lmms}"
LMMS_EVAL_VERSION="${LMMS_EVAL_VERSION:-0.7.3}"
WORK="${WORK:-$(mktemp -d -t divot-lmms-XXXXXX)}"
NUM="${NUM:-40}"
SEED="${SEED:-1234}"
SPLIT="${SPLIT:-held-out}"
MODEL="${MODEL:-shapes-tiny}"
DEVICE="${DEVICE:-cpu}"
RESULT="${RESULT:-$REPO/benchmarks/results/lmms_eval_local.json}"
PY="$LMMS_VENV/bin/python"

say() { echo "[lmms_eval_local] $*" >&2; }
elapsed() { python3 -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$1"; }

if ! "$PY" -c "import lmms_eval, divot" 2>/dev/null; then
    say "creating $LMMS_VENV: lmms-eval==$LMMS_EVAL_VERSION + divot (editable) + torch 2.14.1 / torchvision 0.29.1"
    python3 -m venv "$LMMS_VENV"
    # filelock<4: lmms-eval 0.7.3 patches filelock._api, which filelock 4 no longer has
    if ! "$PY" -m pip install "lmms-eval==$LMMS_EVAL_VERSION" "torch==2.14.1" "torchvision==0.29.1" "filelock<4" \
            -e "$REPO"; then
        say "ERROR: could not install lmms-eval into $LMMS_VENV. The install needs a package index (PyPI, or a"
        say "mirror / wheel folder pip is configured for): it cannot be done offline. Remove $LMMS_VENV, restore"
        say "access to the index, and run this script again (docs/lmms_eval.md)."
        exit 2
    fi
fi
LMMS_VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("lmms-eval"))')"
say "lmms-eval $LMMS_VERSION in $LMMS_VENV; work folder $WORK"

# the clips and the task's documents
mkdir -p "$WORK"
SPLIT_ARGS=()
if [ "$SPLIT" = held-out ]; then SPLIT_ARGS=(--held-out); fi
"$LMMS_VENV/bin/divot" data shapes --out "$WORK/shapes" --num "$NUM" --seed "$SEED" "${SPLIT_ARGS[@]}" --no-progress
"$PY" "$REPO/benchmarks/lmms_eval_local.py" prepare --shapes "$WORK/shapes" --out "$WORK/shapes_egoschema.jsonl"

# divot's own evaluation (option log-likelihood, mean per token)
DIVOT_CMD=("$LMMS_VENV/bin/divot" eval egoschema --questions "$WORK/shapes/egoschema/questions.json"
    --answers "$WORK/shapes/egoschema/subset_answers.json" --videos "$WORK/shapes/videos" --out "$WORK/divot_eval"
    --mode ll --model "$MODEL" --device "$DEVICE" --num-workers 0 --no-progress)
say "running: ${DIVOT_CMD[*]}"
start=$(date +%s.%N)
"${DIVOT_CMD[@]}"
DIVOT_SECONDS=$(elapsed "$start")

# lmms-eval's CLI; datasets reads the task's data_files relative to the working folder, hence the cd.
# Offline: the hub is never asked (the task's documents and the bundled model are local).
LMMS_CMD=("$PY" -m lmms_eval --model divot --model_args "pretrained=$MODEL,device=$DEVICE"
    --tasks shapes_egoschema_mcppl --include_path "$REPO/benchmarks/lmms_eval_tasks" --batch_size 1
    --output_path "$WORK/lmms_eval" --log_samples)
say "running (in $WORK): ${LMMS_CMD[*]}"
start=$(date +%s.%N)
(cd "$WORK" && HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE="$WORK/hf_datasets" \
    "${LMMS_CMD[@]}")
if [ -z "$(find "$WORK/lmms_eval" -name '*_results.json' 2>/dev/null)" ]; then
    # lmms-eval logs an error and still exits 0 when the evaluation fails
    say "ERROR: lmms-eval wrote no results under $WORK/lmms_eval (its error is in the log above)"
    exit 1
fi
LMMS_SECONDS=$(elapsed "$start")

"$PY" "$REPO/benchmarks/lmms_eval_local.py" compare --divot-out "$WORK/divot_eval" --lmms-out "$WORK/lmms_eval" \
    --result "$RESULT" --model "$MODEL" --device "$DEVICE" --seed "$SEED" --split "$SPLIT" \
    --data-command "divot data shapes --out WORK/shapes --num $NUM --seed $SEED ${SPLIT_ARGS[*]}" \
    --divot-command "divot eval egoschema --questions WORK/shapes/egoschema/questions.json --answers WORK/shapes/egoschema/subset_answers.json --videos WORK/shapes/videos --out WORK/divot_eval --mode ll --model $MODEL --device $DEVICE --num-workers 0" \
    --lmms-command "cd WORK && python -m lmms_eval --model divot --model_args pretrained=$MODEL,device=$DEVICE --tasks shapes_egoschema_mcppl --include_path benchmarks/lmms_eval_tasks --batch_size 1 --output_path WORK/lmms_eval --log_samples" \
    --divot-seconds "$DIVOT_SECONDS" --lmms-seconds "$LMMS_SECONDS"
