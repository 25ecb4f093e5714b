#!/usr/bin/env bash
# The CIFAR-10 degradation experiment of docs/reproduction.md: plain-20,
# plain-56, ResNet-20 and ResNet-56 (and any other flagfile named on the
# command line) trained with the paper's section 4.2 recipe on the 45k/5k
# split under one compressed schedule: the same number of iterations for every
# net, the learning rate divided by 10 at 50% and 75% of them.
#
#   reproduction/cifar10.sh CIFAR_DIR OUT_DIR [NET[@SEED] ...]
#
# NET names a flagfile (flags/NET_cifar10.flags); NET@SEED trains it with
# --seed=SEED (weights and input order) in the run directory NET_seedSEED, so
# that seeds of one net sit side by side (NET alone is seed 0, directory NET).
#
# CIFAR_DIR holds train/<class>/*.jpg and test/<class>/*.jpg (`folder:` data
# set); OUT_DIR gets one run directory per net. STEPS (default 3200) sets the
# budget, EVAL_EVERY (default 200) the spacing of the curves' points. The nets
# train at the same time, one CPU thread each (THREADS), in the background, at
# the lowest scheduling priority (NICE, default 19; also their session's
# autogroup's, which is what Linux weighs between sessions) so that building
# and testing on the same machine keeps its cores; a checkpoint is written every CKPT_SECS
# (default 300) seconds, and rerunning the script resumes every unfinished run
# from its last checkpoint. PRECISION (default float32) picks --precision.
# OUT_DIR inside the work tree is best kept under runs/, which git ignores.
# A session's processes and ignored files end with it: reproduction/park_runs.sh
# stops the runs and copies what resuming needs into a folder to commit.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CIFAR_DIR OUT_DIR [NET[@SEED] ...]  (NET: plain20 resnet56 ...)" >&2
  exit 2
fi
cifar_dir=$1
out_dir=$2
shift 2
nets=("$@")
if [[ ${#nets[@]} -eq 0 ]]; then
  nets=(plain20 plain56 resnet20 resnet56)
fi
steps=${STEPS:-3200}
eval_every=${EVAL_EVERY:-200}
threads=${THREADS:-1}
python=${PYTHON:-python}
nice_level=${NICE:-19}
ckpt_secs=${CKPT_SECS:-300}
precision=${PRECISION:-float32}
repo=$(cd "$(dirname "$0")/.." && pwd)

if [[ ! -d $cifar_dir/train || ! -d $cifar_dir/test ]]; then
  echo "$0: $cifar_dir needs train/ and test/ class folders" >&2
  exit 2
fi
mkdir -p "$out_dir"
for run in "${nets[@]}"; do
  net=${run%@*}
  if [[ $run == *@* && ! ${run#*@} =~ ^[0-9]+$ ]]; then
    echo "$0: $run: the seed after @ must be a non-negative integer" >&2
    exit 2
  fi
  flagfile=$repo/flags/${net}_cifar10.flags
  if [[ ! -f $flagfile ]]; then
    echo "$0: no flagfile $flagfile" >&2
    exit 2
  fi
done

for run in "${nets[@]}"; do
  net=${run%@*}
  seed=0
  if [[ $run == *@* ]]; then
    seed=${run#*@}
    net=${net}_seed$seed
  fi
  cmd=("$python" -m tf_resnet.train
       --flagfile="$repo/flags/${run%@*}_cifar10.flags"
       --dataset="folder:$cifar_dir" --holdout=5000 --monitor_test
       --train_steps="$steps"
       --lr_boundaries="$((steps / 2)),$((steps * 3 / 4))"
       --eval_every_steps="$eval_every"
       --checkpoint_every_secs="$ckpt_secs"
       --precision="$precision"
       --seed="$seed"
       --model_dir="$out_dir/$net")
  echo "${cmd[*]}" | tee "$out_dir/$net.command"
  # setsid starts a new session, hence a new autogroup, which Linux weighs
  # against the caller's whatever the processes' nice levels: the run sets its
  # own autogroup's level from inside the new session, then becomes the trainer.
  (cd "$repo" && TF_NUM_INTRAOP_THREADS=$threads TF_NUM_INTEROP_THREADS=$threads \
     setsid nohup bash -c 'echo "$$" >"$1"
                           echo "$2" 2>/dev/null >/proc/self/autogroup
                           level=$2; shift 2
                           exec nice -n "$level" "$@"' \
       launch "$out_dir/$net.pid" "$nice_level" "${cmd[@]}" \
       >>"$out_dir/$net.log" 2>&1 &)
done
echo "Started ${#nets[@]} runs; follow them with: tail -f $out_dir/*.log"
