#!/usr/bin/env bash
# The embedded demo: a tiny random-init CLIP learns prompts on a generated dataset of drawn
# shapes (base classes), then is evaluated on base and new classes. About a minute on 2 CPU
# cores. The numbers come from a random model and say nothing about real CLIP.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
DATA=${DATA:-./data}
OUT=${OUT:-./output/demo}
SEED=${SEED:-1}
TRAINERS=${TRAINERS:-CoOp}

for TRAINER in ${TRAINERS}; do
    TRAIN_DIR=${OUT}/base2new/train_base/generated_shapes/shots_16/${TRAINER}/tiny/seed${SEED}
    TEST_DIR=${OUT}/base2new/test_new/generated_shapes/shots_16/${TRAINER}/tiny/seed${SEED}
    COMMON=(--root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}"
            --dataset-config-file configs/datasets/generated_shapes.yaml
            --config-file "configs/trainers/${TRAINER}/tiny.yaml")

    echo "== ${TRAINER}: training on the base classes"
    "${PYTHON}" train.py "${COMMON[@]}" --output-dir "${TRAIN_DIR}" \
        DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base > /dev/null

    echo "== ${TRAINER}: evaluating on the new classes"
    "${PYTHON}" train.py "${COMMON[@]}" --output-dir "${TEST_DIR}" \
        --model-dir "${TRAIN_DIR}" --load-epoch 3 --eval-only \
        DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES new > /dev/null

    "${PYTHON}" - "${TRAIN_DIR}" "${TEST_DIR}" <<'PY'
import json
import sys

for label, folder in zip(("base", "new"), sys.argv[1:]):
    metrics = json.load(open(f"{folder}/results.json"))["metrics"]
    print(f"   {label:4s}  accuracy {metrics['accuracy']:6.2f}%  ECE {metrics['ece']:6.2f}%"
          f"   ({folder})")
PY
done
echo "Outputs (logs, checkpoints, results.json, tensorboard) are under ${OUT}"
