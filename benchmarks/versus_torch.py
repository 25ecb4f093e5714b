r"""Our training step beside PyTorch's, alternating, in one run: docs/performance.md's ratios.

Runs `train_throughput.py` (the real Trainer on one batch held in memory) and
the PyTorch peer (`../shared/peers/torch_resnet.py`, the same architecture,
batch and optimizer; `--bf16 1` is its `torch.autocast` bfloat16) one after
the other, `--rounds` times, each in its own process, so that neither holds
the cores while the other is timed and a slow spell of the shared machine
touches both. Reports each round and the median of the per-round ratios
ours/PyTorch: images/s and peak resident memory (the peer's from the kernel's
accounting of the child, `os.wait4`), and ours' fraction of the convolution
peak measured in the same process in the precision's compute type.

  python benchmarks/versus_torch.py --depth=20 --batch_size=128 \
      --precision=mixed_bfloat16
  python benchmarks/versus_torch.py --depth=50 --batch_size=32 --steps=4 \
      --steps_per_call=2 --precision=float32 --format=json

PyTorch must import in --peer_python (default: this interpreter); the
project's venv gets it with `pip install torch==2.13.0`.
"""

import json
import os
import sys

from absl import app
from absl import flags

# The benchmark's own module, beside this file.
import peer_runs

_HERE = os.path.dirname(os.path.abspath(__file__))

_DEPTH = flags.DEFINE_integer("depth", None, "Weight layers: ImageNet 18, 34, "
                              "50, 101, 152; CIFAR-10 6n+2.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Batch for both.",
                                   lower_bound=1)
_PRECISION = flags.DEFINE_enum(
    "precision", "float32", ["float32", "mixed_bfloat16"],
    "Ours' --precision; mixed_bfloat16 runs the peer with --bf16 1.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating pairs of runs.",
                              lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps in each run.",
                              lower_bound=1)
_STEPS_PER_CALL = flags.DEFINE_integer("steps_per_call", 5,
                                       "Ours' steps per tf.function call.",
                                       lower_bound=1)
_WARMUP_STEPS = flags.DEFINE_integer(
    "warmup_steps", 4, "Untimed steps first, in both (oneDNN builds its "
    "bfloat16 kernels on first use).", lower_bound=1)
_PEER = flags.DEFINE_string(
    "peer", os.path.join(_HERE, "..", "..", "shared", "peers",
                         "torch_resnet.py"), "The PyTorch peer's script.")
_PEER_PYTHON = flags.DEFINE_string("peer_python", sys.executable,
                                   "The interpreter that runs the peer.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")

flags.mark_flags_as_required(["depth", "batch_size"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not os.path.isfile(_PEER.value):
    raise app.UsageError(f"--peer: no such file {_PEER.value}")
  bf16 = _PRECISION.value == "mixed_bfloat16"
  ours_cmd = [sys.executable, os.path.join(_HERE, "train_throughput.py"),
              f"--depth={_DEPTH.value}", f"--batch_size={_BATCH_SIZE.value}",
              f"--steps={_STEPS.value}",
              f"--steps_per_call={_STEPS_PER_CALL.value}",
              f"--warmup_steps={_WARMUP_STEPS.value}",
              f"--precision={_PRECISION.value}", "--format=json"]
  peer_cmd = [_PEER_PYTHON.value, _PEER.value, "--depth", str(_DEPTH.value),
              "--batch", str(_BATCH_SIZE.value), "--steps", str(_STEPS.value),
              "--warmup", str(_WARMUP_STEPS.value), "--bf16", str(int(bf16))]
  rounds = []
  for i in range(_ROUNDS.value):
    ours, _ = peer_runs.run_json(ours_cmd, "train_throughput.py")
    peer, peer_rss = peer_runs.run_json(peer_cmd, "the PyTorch peer")
    rounds.append(peer_runs.Round(ours, peer, peer_rss))
    print(f"round {i + 1}/{_ROUNDS.value}: ours {ours['images_per_sec']:.1f} "
          f"images/s, PyTorch {peer['images_per_sec']:.1f} "
          f"({rounds[-1].speed_ratio:.2f}x)", file=sys.stderr, flush=True)
  summary = peer_runs.summarize(rounds)
  if _FORMAT.value == "json":
    print(json.dumps(summary))
    return
  print(f"{summary['network']}, batch {summary['batch_size']}, "
        f"{summary['precision']} (peer: {summary['peer']}, "
        f"{'bf16 autocast' if bf16 else 'float32'}); {summary['cores']} cores "
        f"({summary['cpu']}), medians of {len(rounds)} rounds")
  print(f"  images/s: ours {summary['ours_images_per_sec']:.1f}, PyTorch "
        f"{summary['peer_images_per_sec']:.1f}; ours / PyTorch "
        f"{summary['ours_over_peer']:.2f}x (rounds: "
        + ", ".join(f"{r['ratio']:.2f}" for r in summary["rounds"]) + ")")
  print(f"  ours: {summary['peak_fraction']:.1%} of the "
        f"{summary['peak_conv_gflops_per_sec']:.0f} GFLOP/s convolution peak")
  print(f"  peak RSS: ours {summary['ours_peak_rss_mib']:.0f} MiB "
        f"({summary['ours_rss_after_import_mib']:.0f} after importing "
        f"TensorFlow), PyTorch {summary['peer_peak_rss_mib']} MiB; "
        f"{summary['rss_ratio']:.2f}x")
  print(f"  other processes kept up to {summary['max_others_cores']} cores "
        "busy while ours was timed")
  print(json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
