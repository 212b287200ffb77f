#!/usr/bin/env bash
# Cross-dataset and domain generalisation, step 1: learn prompts on all classes of the source
# dataset (ImageNet unless --source says otherwise), 16 shots per class by default.
# Output (CoOp's layout): $OUT/<source>/<trainer>/<cfg>_<K>shots/seed<S>
# Settings and options: see scripts/common.sh; SOURCE / --source names the source dataset.
set -euo pipefail
USAGE="[--trainer NAME] [--cfg NAME] [--shots K] [--source DATASET] [--data DIR] [--out DIR]\
 [--gpu IDS] SEED [-- KEY VALUE ...]"
OPTIONS="--trainer --cfg --shots --source --data --out --gpu"
SOURCE=${SOURCE:-imagenet}
source "$(dirname "$0")/common.sh"

parse_options "$@"
DATASET=${SOURCE}
read_arguments SEED

DIR=${OUT}/${SOURCE}/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
finished "${DIR}" && exit 0
run_train "${DIR}" --dataset-config-file "${DATASET_CONFIG}" --config-file "${TRAINER_CONFIG}" \
    DATASET.NUM_SHOTS "${SHOTS}" "${OPTS[@]}"
