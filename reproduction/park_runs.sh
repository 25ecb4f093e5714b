#!/usr/bin/env bash
# Parks unfinished runs of reproduction/cifar10.sh where a later session can
# resume them: stops each running trainer (SIGTERM: it saves a checkpoint and
# exits), then copies what resuming needs (the newest training checkpoint,
# the best-so-far checkpoint, config.json, stats.json, labels.txt,
# metrics.jsonl, segments.txt and the launch command) into PARK_DIR, without
# TensorBoard events or older checkpoints. segments.txt gets a line per park:
# the steps this machine ran since the run last started, when, and its CPU.
#
#   reproduction/park_runs.sh OUT_DIR PARK_DIR [NET ...]
#
# A session's processes and its git-ignored files end with it; commit
# PARK_DIR to carry the runs over. To resume: copy PARK_DIR back to OUT_DIR
# (`mkdir -p OUT_DIR && cp -r PARK_DIR/. OUT_DIR/`) and rerun the same
# reproduction/cifar10.sh command.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 OUT_DIR PARK_DIR [NET ...]" >&2
  exit 2
fi
out_dir=$1
park_dir=$2
shift 2
nets=("$@")
if [[ ${#nets[@]} -eq 0 ]]; then
  for config in "$out_dir"/*/config.json; do
    [[ -f $config ]] && nets+=("$(basename "$(dirname "$config")")")
  done
fi
if [[ ${#nets[@]} -eq 0 ]]; then
  echo "$0: no runs (*/config.json) in $out_dir" >&2
  exit 2
fi

# Running: exists and is not a zombie (an exited child its parent has not
# reaped yet).
running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}
# Stop the trainers first, all at once: each saves its checkpoint on SIGTERM.
pids=()
for net in "${nets[@]}"; do
  pid_file=$out_dir/$net.pid
  if [[ -f $pid_file ]] && running "$(cat "$pid_file")"; then
    pid=$(cat "$pid_file")
    kill -CONT "$pid" 2>/dev/null || true  # In case it was paused.
    kill -TERM "$pid"
    pids+=("$pid")
    echo "$net: stopping trainer $pid"
  fi
done
for pid in "${pids[@]}"; do
  for _ in $(seq 600); do
    running "$pid" || break
    sleep 1
  done
  if running "$pid"; then
    echo "$0: trainer $pid did not stop within 10 minutes" >&2
    exit 1
  fi
done

# The newest checkpoint a CheckpointManager directory names, with its files.
copy_latest() {
  local from=$1 to=$2
  [[ -f $from/checkpoint ]] || return 0
  local latest
  latest=$(sed -n 's/^model_checkpoint_path: "\(.*\)"$/\1/p' \
    "$from/checkpoint")
  [[ -n $latest ]] || return 0
  latest=$(basename "$latest")
  mkdir -p "$to"
  cp "$from/$latest".* "$to/"
  # The index CheckpointManager reads, naming only this one (with a time,
  # so that the resumed manager manages and in time deletes it).
  local now
  now=$(date +%s)
  printf '%s\n' "model_checkpoint_path: \"$latest\"" \
    "all_model_checkpoint_paths: \"$latest\"" \
    "all_model_checkpoint_timestamps: $now" \
    "last_preserved_timestamp: $((now - 1))" >"$to/checkpoint"
}

# The machine a run's segment ran on, for the results ("which machine and
# precision each run had"): appended to the run's segments.txt, which travels
# with it. The segment began at the last `start` record of its metrics log.
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
family=$(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
model=$(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
flags=$(grep -m1 -o -w 'amx_bf16\|avx512_bf16\|avx512f' /proc/cpuinfo 2>/dev/null \
        | sort -u | tr '\n' ' ' | sed 's/ $//' || true)
machine="${cpu:-unknown CPU} (family ${family:-?} model ${model:-?}; ${flags:-no AVX-512}), $(nproc) cores"
record_segment() {
  local run=$1 start_step start_time end_step
  start_step=$(grep '"kind": "start"' "$run/metrics.jsonl" 2>/dev/null | tail -1 \
               | grep -o '"step": [0-9]*' | grep -o '[0-9]*$' || true)
  start_time=$(grep '"kind": "start"' "$run/metrics.jsonl" 2>/dev/null | tail -1 \
               | grep -o '"time": [0-9.]*' | grep -o '[0-9.]*$' || true)
  end_step=$(grep -o '"step": [0-9]*' "$run/metrics.jsonl" 2>/dev/null \
             | tail -1 | grep -o '[0-9]*$' || true)
  local began="?"
  [[ -n $start_time ]] && began=$(date -u -d "@${start_time%.*}" +%FT%RZ)
  echo "steps ${start_step:-?}-${end_step:-?}, $began to $(date -u +%FT%RZ): $machine" \
    >>"$run/segments.txt"
}

for net in "${nets[@]}"; do
  src=$out_dir/$net
  dst=$park_dir/$net
  rm -rf "$dst"
  mkdir -p "$dst"
  [[ -f $src/metrics.jsonl ]] && record_segment "$src"
  for f in config.json stats.json labels.txt metrics.jsonl segments.txt; do
    [[ -f $src/$f ]] && cp "$src/$f" "$dst/"
  done
  copy_latest "$src" "$dst"
  copy_latest "$src/best" "$dst/best"
  [[ -f $out_dir/$net.command ]] && cp "$out_dir/$net.command" "$park_dir/"
  step=$(grep -o '"step": [0-9]*' "$dst/metrics.jsonl" 2>/dev/null \
         | tail -1 | grep -o '[0-9]*$' || echo 0)
  echo "$net: parked at step ${step:-0} in $dst ($(du -sh "$dst" | cut -f1))"
done
