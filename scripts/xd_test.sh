#!/usr/bin/env bash
# Cross-dataset and domain generalisation, step 2: evaluate the prompts learned by xd_train.sh
# on all classes of a target dataset (another dataset, or ImageNet-V2/-Sketch/-A/-R).
# Output (CoOp's layout): $OUT/evaluation/<trainer>/<cfg>_<K>shots/<dataset>/seed<S>
# Settings and options: see scripts/common.sh; SOURCE / --source names the source dataset.
set -euo pipefail
USAGE="[--trainer NAME] [--cfg NAME] [--shots K] [--load-epoch E] [--source DATASET]\
 [--data DIR] [--out DIR] [--gpu IDS] DATASET SEED [-- KEY VALUE ...]"
OPTIONS="--trainer --cfg --shots --load-epoch --source --data --out --gpu"
SOURCE=${SOURCE:-imagenet}
source "$(dirname "$0")/common.sh"

parse_options "$@"
read_arguments DATASET SEED

MODEL_DIR=${OUT}/${SOURCE}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
DIR=${OUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
finished "${DIR}" && exit 0
[ -d "${MODEL_DIR}" ] || fail "no training run in ${MODEL_DIR}; run xd_train.sh first"
[ -n "${LOADEP}" ] || LOADEP=$(saved_epoch "${MODEL_DIR}")
run_train "${DIR}" --dataset-config-file "${DATASET_CONFIG}" --config-file "${TRAINER_CONFIG}" \
    --model-dir "${MODEL_DIR}" --load-epoch "${LOADEP}" --eval-only "${OPTS[@]}"
