#!/usr/bin/env bash
# Redraws docs/reproduction/'s figures and tables from the runs of
# reproduction/cifar10.sh, and keeps each run's machine-readable log
# (config.json, metrics.jsonl) and command beside them.
#
#   reproduction/report_cifar10.sh OUT_DIR [NET ...]
#
# DEST (default docs/reproduction) is where the figures, tables and logs go:
# one folder per budget, e.g. DEST=docs/reproduction/16k for the
# 16,000-iteration runs. COMPARE_WITH (comma-separated, relative to the
# repository) names earlier budgets' runs/ folders, e.g.
# docs/reproduction/runs,docs/reproduction/16k/runs: results.md then has the
# test error per budget.
# Fig. 7's layer responses are measured from each run's latest checkpoint on
# the test split of the data set the run was trained on.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 OUT_DIR [NET ...]" >&2
  exit 2
fi
out_dir=$1
shift
if [[ -d $out_dir ]]; then
  # The runs' checkpoint indexes name files relative to the runs; the
  # plotting tool runs from the repository.
  out_dir=$(cd "$out_dir" && pwd)
fi
nets=("$@")
if [[ ${#nets[@]} -eq 0 ]]; then
  nets=(plain20 plain56 resnet20 resnet56)
fi
python=${PYTHON:-python}
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${DEST:-$repo/docs/reproduction}
for net in "${nets[@]}"; do  # Every run is checked before anything is written.
  for file in config.json metrics.jsonl; do
    if [[ ! -f $out_dir/$net/$file ]]; then
      echo "$0: $out_dir/$net has no $file (not started?)" >&2
      exit 2
    fi
  done
done
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)  # The plotting tool runs from the repository.

run_dirs=()
for net in "${nets[@]}"; do
  mkdir -p "$dest/runs/$net"
  cp "$out_dir/$net/config.json" "$out_dir/$net/metrics.jsonl" \
     "$dest/runs/$net/"
  if [[ -f $out_dir/$net/segments.txt ]]; then  # Where each part ran.
    cp "$out_dir/$net/segments.txt" "$dest/runs/$net/"
  fi
  if [[ -f $out_dir/$net.command ]]; then
    cp "$out_dir/$net.command" "$dest/runs/$net/command"
  fi
  run_dirs+=("$out_dir/$net")
done
compare=()
if [[ -n ${COMPARE_WITH:-} ]]; then  # Earlier budgets' runs/ folders.
  compare=(--compare_with="$COMPARE_WITH")
fi
(IFS=,; cd "$repo" && "$python" -m tf_resnet.plot \
   --run_dirs="${run_dirs[*]}" --output_dir="$dest" "${compare[@]}")
