# Shared by the experiment scripts (sourced, never run): settings, option parsing, checks and
# the rule that a finished run (results.json present) is skipped while an unfinished one is
# run again, which makes train.py resume from its last checkpoint.
#
# Settings come from the environment; options override them:
#   --trainer NAME   TRAINER   prompt learner (CoOp, CoOpDOR, ...)
#   --cfg NAME       CFG       configs/trainers/<trainer>/<NAME>.yaml (default vit_b16_ctxv1)
#   --shots K        SHOTS     shots per class (default 16)
#   --load-epoch E   LOADEP    checkpoint to evaluate (default: the last one training saved)
#   --data DIR       DATA      data root (DATASET.ROOT)
#   --out DIR        OUT       output root (default ./output)
#   --gpu IDS        CUDA_VISIBLE_DEVICES
#   PYTHON                     interpreter (default python)
# After the positional arguments, `-- KEY VALUE ...` passes config overrides to train.py.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
TRAINER=${TRAINER:-}
CFG=${CFG:-vit_b16_ctxv1}
SHOTS=${SHOTS:-16}
LOADEP=${LOADEP:-}
DATA=${DATA:-}
OUT=${OUT:-output}
GPU=""
POSITIONAL=()
OPTS=()

usage() {  # usage [MESSAGE]: the script's usage line (and what was wrong), exit status 2
    echo "usage: $(basename "$0") ${USAGE}" >&2
    [ -z "${1:-}" ] || echo "error: $1" >&2
    exit 2
}

fail() {
    echo "error: $*" >&2
    exit 1
}

option_variable() {
    case $1 in
        --trainer) echo TRAINER ;;
        --cfg) echo CFG ;;
        --imagenet-cfg) echo IMAGENET_CFG ;;
        --shots) echo SHOTS ;;
        --load-epoch) echo LOADEP ;;
        --data) echo DATA ;;
        --out) echo OUT ;;
        --gpu) echo GPU ;;
        --source) echo SOURCE ;;
        --datasets) echo DATASETS ;;
        --seeds) echo SEEDS ;;
    esac
}

parse_options() {  # parse_options "$@": the options listed in $OPTIONS, then POSITIONAL, OPTS
    local name value
    while [ $# -gt 0 ]; do
        case $1 in
            -h | --help)
                echo "usage: $(basename "$0") ${USAGE}"
                exit 0 ;;
            --)
                shift
                OPTS=("$@")
                break ;;
            -*)
                name=${1%%=*}
                [[ " ${OPTIONS} " == *" ${name} "* ]] || usage "unknown option $1"
                if [[ $1 == *=* ]]; then
                    value=${1#*=}
                    shift
                else
                    [ $# -ge 2 ] || usage "$1 needs a value"
                    value=$2
                    shift 2
                fi
                printf -v "$(option_variable "${name}")" '%s' "${value}" ;;
            *)
                POSITIONAL+=("$1")
                shift ;;
        esac
    done
    if [ -n "${GPU}" ]; then
        export CUDA_VISIBLE_DEVICES=${GPU}
    fi
    [ $(( ${#OPTS[@]} % 2 )) -eq 0 ] || usage "config overrides after -- must be KEY VALUE pairs"
}

is_count() {
    [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]
}

check_settings() {  # the trainer, data root and shot count are usable
    [ -n "${TRAINER}" ] || usage "no trainer: pass --trainer NAME or set TRAINER"
    [ -n "${DATA}" ] || usage "no data root: pass --data DIR or set DATA"
    [ -d "${DATA}" ] || fail "data root \"${DATA}\" is not a directory"
    is_count "${SHOTS}" \
        || usage "the number of shots must be a positive whole number, got \"${SHOTS}\""
    [ -z "${LOADEP}" ] || is_count "${LOADEP}" \
        || usage "the load epoch must be a positive whole number, got \"${LOADEP}\""
}

check_seed() {
    [[ $1 =~ ^[0-9]+$ ]] || usage "SEED must be a whole number, got \"$1\""
}

config_names() {  # config_names DIR: the names of the yaml files in DIR, space-separated
    local path names=()
    for path in "$1"/*.yaml; do
        [ -f "${path}" ] && names+=("$(basename "${path}" .yaml)")
    done
    echo "${names[*]:-none}"
}

trainer_config() {  # trainer_config CFG: path of the trainer's config file, or fail
    local folder="${REPO}/configs/trainers/${TRAINER}"
    [ -d "${folder}" ] || fail "no configs for trainer \"${TRAINER}\": ${folder} does not exist" \
        "(trainers with configs: $(cd "${REPO}/configs/trainers" && echo */ | tr -d /))"
    [ -f "${folder}/$1.yaml" ] || fail "no config \"$1\" for trainer ${TRAINER}:" \
        "${folder}/$1.yaml does not exist (available: $(config_names "${folder}"))"
    echo "${folder}/$1.yaml"
}

dataset_config() {  # dataset_config DATASET: path of the dataset's config file, or fail
    local folder="${REPO}/configs/datasets"
    [ -f "${folder}/$1.yaml" ] || fail "unknown dataset \"$1\": ${folder}/$1.yaml does not" \
        "exist (available: $(config_names "${folder}"))"
    echo "${folder}/$1.yaml"
}

finished() {  # finished DIR: true (and says so) when DIR holds a finished run
    if [ -f "$1/results.json" ]; then
        echo "Skipping $1: it holds a finished run (results.json);" \
            "delete the folder to run it again"
        return 0
    fi
    return 1
}

saved_epoch() {  # saved_epoch TRAIN_DIR: epoch of the last checkpoint a finished training saved
    local dir=$1 pointer
    [ -f "${dir}/results.json" ] || fail "the training run in ${dir} has not finished" \
        "(no results.json); run its training script first"
    pointer=$(find "${dir}" -mindepth 2 -maxdepth 2 -name checkpoint | sort | head -n 1)
    [ -n "${pointer}" ] || fail "no checkpoint in ${dir}; pass --load-epoch"
    local name
    name=$(head -n 1 "${pointer}")
    [[ ${name} =~ ^model\.pth\.tar-([0-9]+)$ ]] \
        || fail "cannot tell the load epoch from ${pointer} (\"${name}\"); pass --load-epoch"
    echo "${BASH_REMATCH[1]}"
}

read_arguments() {  # read_arguments NAME...: assign the positional arguments, then check them
    # Names the positional arguments (e.g. DATASET SEED), checks the settings and the seed,
    # and resolves DATASET_CONFIG (of $DATASET) and TRAINER_CONFIG.
    local names="$*"
    [ ${#POSITIONAL[@]} -eq $# ] || usage "expected ${names// / and }"
    local index=0 name
    for name in "$@"; do
        printf -v "${name}" '%s' "${POSITIONAL[index]}"
        index=$((index + 1))
    done
    check_settings
    check_seed "${SEED}"
    DATASET_CONFIG=$(dataset_config "${DATASET}")
    TRAINER_CONFIG=$(trainer_config "${CFG}")
}

is_zero_shot() {  # true for the trainer that learns nothing (evaluated with --eval-only)
    [ "${TRAINER}" = ZeroshotCLIP ]
}

run_train() {  # run_train OUTPUT_DIR ARG...: train.py for $TRAINER and $SEED into OUTPUT_DIR
    local dir=$1
    shift
    [ ! -d "${dir}" ] || echo "Continuing the unfinished run in ${dir}"
    "${PYTHON}" "${REPO}/train.py" --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
        --output-dir "${dir}" "$@"
}
