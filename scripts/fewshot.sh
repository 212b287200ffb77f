#!/usr/bin/env bash
# Few-shot learning: learn prompts on all classes of DATASET with K shots per class and test
# on its test set (the run's final test).
# Output (CoOp's layout): $OUT/<dataset>/<trainer>/<cfg>_<K>shots/seed<S>; with ImageNet and
# 16 shots this is the same run as xd_train.sh's.
# Settings and options: see scripts/common.sh.
set -euo pipefail
USAGE="[--trainer NAME] [--cfg NAME] [--shots K] [--data DIR] [--out DIR] [--gpu IDS]\
 DATASET SEED [-- KEY VALUE ...]"
OPTIONS="--trainer --cfg --shots --data --out --gpu"
source "$(dirname "$0")/common.sh"

parse_options "$@"
read_arguments DATASET SEED

DIR=${OUT}/${DATASET}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
finished "${DIR}" && exit 0
run_train "${DIR}" --dataset-config-file "${DATASET_CONFIG}" --config-file "${TRAINER_CONFIG}" \
    DATASET.NUM_SHOTS "${SHOTS}" "${OPTS[@]}"
