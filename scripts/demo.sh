#!/usr/bin/env bash
# The embedded demo: a tiny random-init CLIP learns prompts on a generated dataset of drawn
# shapes (base classes) with CoOp and with CoOpDOR, then is evaluated on base and new classes,
# through the same base-to-new scripts a real experiment uses. About a minute on 2 CPU cores
# (the first DOR run also encodes the WordNet vocabulary once). The numbers come from a random
# model and say nothing about real CLIP or about DOR.
set -euo pipefail
cd "$(dirname "$0")/.."

export PYTHON=${PYTHON:-python}
DATA=${DATA:-./data}
OUT=${OUT:-./output/demo}
SEED=${SEED:-1}
TRAINERS=${TRAINERS:-CoOp CoOpDOR}
mkdir -p "${DATA}"

for TRAINER in ${TRAINERS}; do
    # The tiny configs train for 3 epochs, so the new classes are evaluated at epoch 3.
    SETTINGS=(--trainer "${TRAINER}" --cfg tiny --data "${DATA}" --out "${OUT}")
    RUN=generated_shapes/shots_16/${TRAINER}/tiny/seed${SEED}

    echo "== ${TRAINER}: training on the base classes"
    bash scripts/base2new_train.sh "${SETTINGS[@]}" generated_shapes "${SEED}" > /dev/null

    echo "== ${TRAINER}: evaluating on the new classes"
    bash scripts/base2new_test.sh "${SETTINGS[@]}" --load-epoch 3 generated_shapes "${SEED}" \
        > /dev/null

    "${PYTHON}" - "${OUT}/base2new/train_base/${RUN}" "${OUT}/base2new/test_new/${RUN}" <<'PY'
import json
import sys

for label, folder in zip(("base", "new"), sys.argv[1:]):
    metrics = json.load(open(f"{folder}/results.json"))["metrics"]
    print(f"   {label:4s}  accuracy {metrics['accuracy']:6.2f}%  ECE {metrics['ece']:6.2f}%"
          f"   ({folder})")
PY
done
echo "Outputs (logs, checkpoints, results.json, tensorboard) are under ${OUT}"
