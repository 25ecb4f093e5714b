#!/usr/bin/env bash
# Fine-tuning against training from scratch (docs/pretrained.md, "Fine-tuning"):
# a CIFAR ResNet-20 trained by this project on CIFAR-10 for SOURCE_STEPS
# iterations (the paper's section 4.2 recipe, 45k/5k split, the learning rate
# divided by 10 at 50% and 75%), then trained on the embedded handwritten
# digits for STEPS iterations three ways with the same recipe: from scratch,
# fine-tuned from the CIFAR run (every layer), and fine-tuned with the
# classifier alone (--trainable=head). Prints the test errors.
#
#   reproduction/finetune_digits.sh CIFAR_DIR OUT_DIR
#
# CIFAR_DIR holds train/<class>/*.jpg and test/<class>/*.jpg. Rerunning
# resumes unfinished runs and reuses finished ones. THREADS (default 1) sets
# TensorFlow's threads per run.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 CIFAR_DIR OUT_DIR" >&2
  exit 2
fi
cifar_dir=$1
out_dir=$2
source_steps=${SOURCE_STEPS:-2000}
steps=${STEPS:-300}
threads=${THREADS:-1}
python=${PYTHON:-python}
repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ ! -d $cifar_dir/train || ! -d $cifar_dir/test ]]; then
  echo "$0: $cifar_dir needs train/ and test/ class folders" >&2
  exit 2
fi
mkdir -p "$out_dir"

train() {  # NAME ARGS...: one run, logged, resumable.
  local name=$1
  shift
  local cmd=("$python" -m tf_resnet.train --model_dir="$out_dir/$name" "$@")
  echo "${cmd[*]}" | tee "$out_dir/$name.command"
  (cd "$repo" && TF_NUM_INTRAOP_THREADS=$threads \
     TF_NUM_INTEROP_THREADS=$threads "${cmd[@]}") >>"$out_dir/$name.log" 2>&1
}

train cifar_resnet20 --flagfile="$repo/flags/resnet20_cifar10.flags" \
  --dataset="folder:$cifar_dir" --train_steps="$source_steps" \
  --lr_boundaries="$((source_steps / 2)),$((source_steps * 3 / 4))" \
  --eval_every_steps=500
digits=(--dataset=digits --depth=20 --batch_size=64 --train_steps="$steps"
        --lr_boundaries="$((steps / 2)),$((steps * 3 / 4))"
        --eval_every_steps="$steps" --steps_per_loop=25)
train digits_scratch "${digits[@]}"
train digits_finetune "${digits[@]}" --init_from="$out_dir/cifar_resnet20"
train digits_head "${digits[@]}" --init_from="$out_dir/cifar_resnet20" \
  --trainable=head

for name in cifar_resnet20 digits_scratch digits_finetune digits_head; do
  "$python" -m tf_resnet.evaluate --model_dir="$out_dir/$name" --format=json \
    | sed "s/^/$name: /"
done
