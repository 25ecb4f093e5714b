r"""Inference with oneDNN's kernels against Eigen's, per batch size, in one run.

The training binaries turn TensorFlow's oneDNN kernels on on every x86-64
CPU (`startup.use_onednn`): on AVX2 machines, where TensorFlow 2.21 keeps
them off by default, they speed up a training batch. The server keeps
TensorFlow's default instead. This measures why: the network's forward pass
(inference mode, a tf.function, as an export runs it) on random images, in
CPU seconds per image, for each batch size, once in a child process with
TF_ENABLE_ONEDNN_OPTS=1 and once with 0, alternating, `--rounds` times;
it reports the medians and the ratio oneDNN / Eigen (above 1: oneDNN is
slower). CPU time, not wall time, so that other processes on a shared
machine move the figures less; others' load is reported too.

  python benchmarks/onednn_inference.py [--networks=imagenet:50,cifar:20]
      [--batch_sizes=1,8,32] [--rounds=3] [--format=json]
"""

import json
import os
import statistics
import subprocess
import sys

from absl import app
from absl import flags

import machine

_NETWORKS = flags.DEFINE_list(
    "networks", ["imagenet:50", "cifar:20"],
    "FAMILY:DEPTH of the networks to time.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8", "32"],
                                 "Batch sizes to time.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds, each setting once.")
_REPEATS = flags.DEFINE_integer("repeats", 3,
                                "Timed calls per batch size, after one "
                                "call for tracing and warm-up.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")
_CHILD = flags.DEFINE_string("child", None,
                             "Internal: time FAMILY:DEPTH in this process.")

_SETTINGS = (("oneDNN", "1"), ("Eigen", "0"))


def _time_here(network: str, batch_sizes: list[int], repeats: int) -> dict:
  """CPU seconds per image of `network` at each batch size, in this process."""
  import time  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_resnet.model import zoo  # pylint: disable=g-import-not-at-top

  family, depth = network.split(":")
  config = zoo.ModelConfig(family=family, depth=int(depth))
  net = zoo.build_model(config)
  size = 224 if family == "imagenet" else 32
  forward = tf.function(lambda x: net(x, is_training=False))
  result = {}
  for batch in batch_sizes:
    images = tf.random.uniform([batch, size, size, 3])
    forward(images).numpy()
    began = time.process_time()
    for _ in range(repeats):
      forward(images).numpy()
    result[str(batch)] = (time.process_time() - began) / (repeats * batch)
  return result


def _child(network: str, onednn: str) -> dict:
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn,
             TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f"--child={network}",
       f"--batch_sizes={','.join(_BATCH_SIZES.value)}",
       f"--repeats={_REPEATS.value}"],
      env=env, capture_output=True, text=True, check=False)
  if run.returncode != 0:
    raise RuntimeError(f"{network} with TF_ENABLE_ONEDNN_OPTS={onednn} "
                       f"failed:\n{run.stderr[-2000:]}")
  return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  batch_sizes = [int(b) for b in _BATCH_SIZES.value]
  if _CHILD.value:
    print(json.dumps(_time_here(_CHILD.value, batch_sizes, _REPEATS.value)))
    return
  samples = {}  # (network, setting, batch) -> [seconds per image]
  with machine.OthersLoad() as others:
    for _ in range(_ROUNDS.value):
      for network in _NETWORKS.value:
        for setting, value in _SETTINGS:
          for batch, seconds in _child(network, value).items():
            samples.setdefault((network, setting, batch), []).append(seconds)
  rows = []
  for network in _NETWORKS.value:
    for batch in batch_sizes:
      onednn = statistics.median(samples[(network, "oneDNN", str(batch))])
      eigen = statistics.median(samples[(network, "Eigen", str(batch))])
      rows.append({
          "network": network, "batch_size": batch,
          "onednn_ms_cpu_per_image": round(onednn * 1e3, 2),
          "eigen_ms_cpu_per_image": round(eigen * 1e3, 2),
          "onednn_over_eigen": round(onednn / eigen, 2),
          "onednn_over_eigen_per_round": [
              round(o / e, 2) for o, e in zip(
                  samples[(network, "oneDNN", str(batch))],
                  samples[(network, "Eigen", str(batch))])],
      })
  context = {"cpu": machine.cpu_model(), "cores": os.cpu_count(),
             "rounds": _ROUNDS.value, "others_cores": others.cores,
             "load_average": [round(v, 1) for v in os.getloadavg()]}
  machine.print_rows(
      rows,
      lambda r: (f"{r['network']:>12} batch {r['batch_size']:>3}: oneDNN "
                 f"{r['onednn_ms_cpu_per_image']:8.2f} ms, Eigen "
                 f"{r['eigen_ms_cpu_per_image']:8.2f} ms CPU per image, "
                 f"oneDNN / Eigen {r['onednn_over_eigen']:.2f} "
                 f"{r['onednn_over_eigen_per_round']}"),
      context, _FORMAT.value == "json")


if __name__ == "__main__":
  app.run(main)
