#!/usr/bin/env bash
# Base-to-new generalisation, step 2: evaluate the prompts learned by base2new_train.sh on the
# new half of DATASET's classes.
# Output (CoOp's layout): $OUT/base2new/test_new/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>
# Settings and options: see scripts/common.sh.
set -euo pipefail
USAGE="[--trainer NAME] [--cfg NAME] [--shots K] [--load-epoch E] [--data DIR] [--out DIR]\
 [--gpu IDS] DATASET SEED [-- KEY VALUE ...]"
OPTIONS="--trainer --cfg --shots --load-epoch --data --out --gpu"
source "$(dirname "$0")/common.sh"

parse_options "$@"
read_arguments DATASET SEED

RUN=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
MODEL_DIR=${OUT}/base2new/train_base/${RUN}
DIR=${OUT}/base2new/test_new/${RUN}
finished "${DIR}" && exit 0
if is_zero_shot; then  # no checkpoint: the new classes are evaluated directly
    run_train "${DIR}" --dataset-config-file "${DATASET_CONFIG}" --config-file \
        "${TRAINER_CONFIG}" --eval-only DATASET.NUM_SHOTS "${SHOTS}" \
        DATASET.SUBSAMPLE_CLASSES new "${OPTS[@]}"
    exit 0
fi
[ -d "${MODEL_DIR}" ] || fail "no training run in ${MODEL_DIR}; run base2new_train.sh first"
[ -n "${LOADEP}" ] || LOADEP=$(saved_epoch "${MODEL_DIR}")
run_train "${DIR}" --dataset-config-file "${DATASET_CONFIG}" --config-file "${TRAINER_CONFIG}" \
    --model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}" --eval-only \
    DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES new "${OPTS[@]}"
