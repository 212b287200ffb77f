#!/usr/bin/env bash
# Base-to-new generalisation, step 1: learn prompts on the base half of DATASET's classes
# (16 shots per class by default). The run's final test gives the base-class numbers.
# Output (CoOp's layout): $OUT/base2new/train_base/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>
# Settings and options: see scripts/common.sh.
set -euo pipefail
USAGE="[--trainer NAME] [--cfg NAME] [--shots K] [--data DIR] [--out DIR] [--gpu IDS]\
 DATASET SEED [-- KEY VALUE ...]"
OPTIONS="--trainer --cfg --shots --data --out --gpu"
source "$(dirname "$0")/common.sh"

parse_options "$@"
read_arguments DATASET SEED

DIR=${OUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
finished "${DIR}" && exit 0
FLAGS=()
is_zero_shot && FLAGS=(--eval-only)  # nothing to learn: its evaluation is the base result
run_train "${DIR}" --dataset-config-file "${DATASET_CONFIG}" --config-file "${TRAINER_CONFIG}" \
    "${FLAGS[@]}" DATASET.NUM_SHOTS "${SHOTS}" DATASET.SUBSAMPLE_CLASSES base "${OPTS[@]}"
