#!/usr/bin/env bash
# Base-to-new generalisation over datasets and seeds for one trainer: for each dataset and
# seed, base2new_train.sh then base2new_test.sh (finished runs are skipped), then
# parse_test_res.py summarises $OUT/base2new into $OUT/base2new/summary.csv.
#   DATASETS / --datasets "a b"  datasets (default: the 11 of CoOp's protocol)
#   SEEDS / --seeds "1 2 3"      seeds (default 1 2 3)
#   IMAGENET_CFG / --imagenet-cfg NAME   config for ImageNet (default: the --cfg one)
# Other settings and options: see scripts/common.sh. The first failing run stops the driver;
# running it again skips what finished and resumes the rest.
set -euo pipefail
USAGE="[--trainer NAME] [--cfg NAME] [--imagenet-cfg NAME] [--datasets \"A B\"] [--seeds \"1 2\"]\
 [--shots K] [--load-epoch E] [--data DIR] [--out DIR] [--gpu IDS] [-- KEY VALUE ...]"
OPTIONS="--trainer --cfg --imagenet-cfg --datasets --seeds --shots --load-epoch --data --out --gpu"
DATASETS=${DATASETS:-imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101\
 fgvc_aircraft sun397 dtd eurosat ucf101}
SEEDS=${SEEDS:-1 2 3}
IMAGENET_CFG=${IMAGENET_CFG:-}
source "$(dirname "$0")/common.sh"

parse_options "$@"
[ ${#POSITIONAL[@]} -eq 0 ] || usage "unexpected argument ${POSITIONAL[0]}"
check_settings
IMAGENET_CFG=${IMAGENET_CFG:-${CFG}}
[ -n "${DATASETS// /}" ] || usage "no datasets"
[ -n "${SEEDS// /}" ] || usage "no seeds"
for SEED in ${SEEDS}; do check_seed "${SEED}"; done
for DATASET in ${DATASETS}; do dataset_config "${DATASET}" > /dev/null; done
trainer_config "${CFG}" > /dev/null
trainer_config "${IMAGENET_CFG}" > /dev/null
PARSER=${REPO}/parse_test_res.py
[ -f "${PARSER}" ] || fail "${PARSER} is missing: it summarises the results at the end"

export PYTHON TRAINER SHOTS LOADEP DATA OUT
[ -z "${GPU}" ] || export CUDA_VISIBLE_DEVICES=${GPU}
HERE=$(dirname "$0")
for DATASET in ${DATASETS}; do
    CONFIG=${CFG}
    [ "${DATASET}" != imagenet ] || CONFIG=${IMAGENET_CFG}
    for SEED in ${SEEDS}; do
        echo "== ${TRAINER} · ${DATASET} · seed ${SEED}: base classes (train)"
        CFG=${CONFIG} bash "${HERE}/base2new_train.sh" "${DATASET}" "${SEED}" -- "${OPTS[@]}"
        echo "== ${TRAINER} · ${DATASET} · seed ${SEED}: new classes (test)"
        CFG=${CONFIG} bash "${HERE}/base2new_test.sh" "${DATASET}" "${SEED}" -- "${OPTS[@]}"
    done
done

# SEEDS is a list of words, split on purpose.
"${PYTHON}" "${PARSER}" "${OUT}/base2new" --csv "${OUT}/base2new/summary.csv" --seeds ${SEEDS}
