r"""Does loading and unloading model B hurt model A's latency? (TF Serving #1866, #881)

Starts the server binary with a tiny model A, runs `--clients` closed-loop
gRPC clients on A's Classify, and measures A's latency in alternating
phases: quiet (nothing else happens) and churn (a ResNet-50, B, is added by
HandleReloadConfigRequest, answers one Classify and is dropped again, over
and over). Each arm runs its own server, `--rounds` times, interleaved with
the other arms; a round is one quiet and one churn phase. Arms:

  in process            the server as shipped: A and B share the GIL and
                        TensorFlow's thread pools; TF2 exports run in a
                        Session; B loads, unloads and builds its executors
                        on threads at nice 10 (--model_load_niceness).
  function runner       the same with --saved_model_runner=function: B
                        loads by tf.saved_model.load (the default before
                        2026-12-07).
  loads at nice 0       the same with --model_load_niceness=0: loads in the
                        calling thread and executor builds in the request's,
                        at the requests' priority (as tensorflow_model_server;
                        the default before 2026-12-07, second session).
  intra-op 1            the same with --tensorflow_intra_op_parallelism=1
                        --tensorflow_inter_op_parallelism=4.
  B in another process  B loads, answers and unloads in a second server;
                        the bound of any in-process scheme on this machine.
  B elsewhere at nice 19  the same, the second server at nice 19.
  baseline tree         the server as shipped by another checkout
                        (`--baseline_tree`, a git worktree of an earlier
                        commit, say): a change measured against its parent
                        in one run.

Prints A's p50/p99 per phase, A's p99 during B's load and during B's
request, the cores other processes kept busy (`others_cores`: the servers
and this process excluded), and per arm the median over rounds of churn's
p99 over the same round's quiet p99 (issue 26's bar: within 1.5).

  python benchmarks/load_isolation.py [--rounds=2] [--seconds=30]
      [--clients=2] [--arms=in process,loads at nice 0,B in another process]
      [--baseline_tree=PATH --arms="in process,baseline tree"]
      [--format=json]
"""

import os
import subprocess
import tempfile
import threading
import time
from typing import Optional

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

import machine
from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import resnet
from tf_resnet.serving import model_config
from tf_resnet.serving import protocol
from tf_resnet.testing import exports
from tf_resnet.testing import processes
# pylint: enable=g-import-not-at-top,g-bad-import-order

# Arm: (server flags, B in a second server, that server's nice value).
_ARMS = {
    # The server as shipped: every model shares TensorFlow's thread pools.
    "in process": ((), False, 0),
    # tf.saved_model.load: Python rebuilds each function, holding the GIL.
    "function runner": (("--saved_model_runner=function",), False, 0),
    # Loads at the priority of requests, as tensorflow_model_server does.
    "loads at nice 0": (("--model_load_niceness=0",), False, 0),
    # Each op runs whole on one thread, so A's ops do not wait behind shards
    # of B's convolutions queued in the shared intra-op pool; 4 inter-op
    # threads let A's ops run beside B's, time-sliced by the kernel.
    "intra-op 1": (("--tensorflow_intra_op_parallelism=1",
                    "--tensorflow_inter_op_parallelism=4"), False, 0),
    # B in a second server process: the same CPU taken from A, no GIL or
    # thread pool shared; what any in-process scheme can at best reach here.
    "B in another process": ((), True, 0),
    # The same, B's server at nice 19: does CPU priority alone isolate A?
    "B elsewhere at nice 19": ((), True, 19),
    # The server of --baseline_tree, as it shipped there.
    "baseline tree": ((), False, 0),
}

_ROUNDS = flags.DEFINE_integer("rounds", 2, "Quiet/churn pairs per arm.")
_SECONDS = flags.DEFINE_float("seconds", 30.0, "Seconds per phase (at least).")
_CLIENTS = flags.DEFINE_integer("clients", 2, "Clients of model A.")
_ARMS_FLAG = flags.DEFINE_list("arms", list(_ARMS), "Arms to run, of: "
                               + ", ".join(_ARMS) + ".")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")
_BASELINE_TREE = flags.DEFINE_string(
    "baseline_tree", None, "A checkout whose server the `baseline tree` arm "
    "runs (its tf_resnet first on PYTHONPATH).")


def _export_resnet50(base: str) -> None:
  net = resnet.resnet50()
  net(tf.random.normal([2, 224, 224, 3], stddev=50.0), is_training=True)
  writer.write(serving_module.for_run(
      net, "imagenet", np.full([224, 224, 3], 110.0),
      [str(i) for i in range(1000)]), base)


def _cpu_seconds(pid: int) -> float:
  """User + system CPU of a running process (all its threads)."""
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Server:
  """The server binary on a free port, serving `models` (name -> base)."""

  def __init__(self, root: str, models: dict[str, str], extra_flags=(),
               niceness: int = 0, tree: Optional[str] = None):
    self.port = processes.free_port()
    config_path = os.path.join(root, f"models.{self.port}.config")
    with open(config_path, "w") as f:
      f.write(str(model_config.models_config(models)))
    self.process = subprocess.Popen(
        processes.command("tf_resnet.serving.server", f"--port={self.port}",
                          f"--model_config_file={config_path}",
                          "--file_system_poll_wait_seconds=0",
                          "--enable_model_warmup=false", *extra_flags),
        env=startup.user_environ(TF_CPP_MIN_LOG_LEVEL="2",
                                 **({"PYTHONPATH": tree} if tree else {})),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=(lambda: os.nice(niceness)) if niceness else None)
    self.channel = None
    if "Serving gRPC" not in self.process.stdout.readline():
      self.stop()
      raise RuntimeError("the server did not start")
    self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
    self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
    self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(
        self.channel)

  def stop(self) -> None:
    if self.channel is not None:
      self.channel.close()
    self.process.terminate()
    self.process.wait(timeout=60)


def _churn(server: _Server, keep: dict[str, str], big: str, image,
           stop: threading.Event, stages: list) -> None:
  """Loads B, asks it once, unloads it, until `stop`; records the stages."""
  while not stop.is_set():
    for stage, wanted in (("load", dict(keep, b=big)), ("unload", keep)):
      began = time.perf_counter()
      status = server.models.HandleReloadConfigRequest(
          model_management_pb2.ReloadConfigRequest(
              config=model_config.models_config(wanted)),
          timeout=1800).status
      if status.error_code:
        raise RuntimeError(f"reload failed: {status}")
      stages.append((stage, began, time.perf_counter()))
      if stage == "load":
        began = time.perf_counter()
        server.predictions.Classify(protocol.classify_request(
            image, "b", "classify_single_view"), timeout=300)
        stages.append(("b_request", began, time.perf_counter()))


def _p99_during(latencies, stages, stage: str) -> Optional[float]:
  """A's p99 over the requests whose midpoint fell in a `stage` of churn."""
  ms = [(end - began) * 1000 for began, end in latencies
        if any(s == stage and b <= (began + end) / 2 <= e
               for s, b, e in stages)]
  return round(float(np.percentile(ms, 99)), 1) if ms else None


def _phase(a: _Server, b: Optional[_Server], request, churn_args,
           churn: bool) -> dict:
  """A's latency for `--seconds`, with B churning (in `b`, or `a`) or not."""
  latencies, stop, stages = [], threading.Event(), []

  def client():
    while not stop.is_set():
      began = time.perf_counter()
      a.predictions.Classify(request, timeout=120)
      latencies.append((began, time.perf_counter()))

  threads = [threading.Thread(target=client) for _ in range(_CLIENTS.value)]
  if churn:
    threads.append(threading.Thread(target=_churn, args=(
        b or a, *churn_args, stop, stages)))
  pids = [s.process.pid for s in (a, b) if s is not None]
  servers_cpu = sum(map(_cpu_seconds, pids))
  began = time.perf_counter()
  with machine.OthersLoad() as others:
    for t in threads:
      t.start()
    time.sleep(_SECONDS.value)
    stop.set()
    for t in threads:
      t.join()  # A churn phase ends with B unloaded.
  servers_cores = ((sum(map(_cpu_seconds, pids)) - servers_cpu)
                   / (time.perf_counter() - began))
  ms = np.array([end - b for b, end in latencies]) * 1000
  return {"phase": "churn" if churn else "quiet",
          "requests": len(ms),
          "p50_ms": round(float(np.percentile(ms, 50)), 1),
          "p99_ms": round(float(np.percentile(ms, 99)), 1),
          "p99_during_b_load_ms": _p99_during(latencies, stages, "load"),
          "p99_during_b_request_ms": _p99_during(latencies, stages,
                                                 "b_request"),
          "b_load_unload_cycles": sum(s == "unload" for s, _, _ in stages),
          "servers_cores": round(servers_cores, 2),
          # OthersLoad counts the servers (children still running) as others.
          "others_cores": (None if others.cores is None else
                           round(max(0.0, others.cores - servers_cores), 2))}


def _round(arm: str, round_: int, root: str, tiny: str, big: str,
           image_a, image_b) -> list[dict]:
  """One quiet and one churn phase of an arm, on servers of its own."""
  extra_flags, b_elsewhere, niceness = _ARMS[arm]
  tree = _BASELINE_TREE.value if arm == "baseline tree" else None
  servers = [_Server(root, {"a": tiny}, extra_flags, tree=tree)]
  try:
    if b_elsewhere:  # B's server serves A too, as A's does during churn.
      servers.append(_Server(root, {"a": tiny}, extra_flags, niceness))
    a, b = servers[0], (servers[1] if b_elsewhere else None)
    request = protocol.classify_request(image_a, "a", "serving_default")
    a.predictions.Classify(request, timeout=120)
    return [dict(arm=arm, round=round_, **_phase(
        a, b, request, ({"a": tiny}, big, image_b), churn))
            for churn in (False, True)]
  finally:
    for server in servers:
      server.stop()


def main(argv):
  del argv
  for arm in _ARMS_FLAG.value:
    if arm not in _ARMS:
      raise app.UsageError(f"`--arms`: unknown arm {arm!r}, not one of "
                           f"{list(_ARMS)}")
  if "baseline tree" in _ARMS_FLAG.value and not (
      _BASELINE_TREE.value and os.path.isdir(
          os.path.join(_BASELINE_TREE.value, "tf_resnet"))):
    raise app.UsageError("the `baseline tree` arm needs `--baseline_tree`, "
                         "a checkout holding tf_resnet/")
  root = tempfile.mkdtemp()
  tiny = os.path.join(root, "tiny")
  exports.tiny_export(tiny)
  big = os.path.join(root, "resnet50")
  _export_resnet50(big)
  image_a = [tf.io.encode_png(np.full([32, 32, 3], 90, np.uint8)).numpy()]
  image_b = [tf.io.encode_jpeg(np.random.RandomState(0).uniform(
      0, 255, [375, 500, 3]).astype(np.uint8)).numpy()]
  rows = []
  for round_ in range(_ROUNDS.value):  # Arms interleaved: same conditions.
    for arm in _ARMS_FLAG.value:
      rows += _round(arm, round_, root, tiny, big, image_a, image_b)
  ratios = {}
  for quiet, churn in zip(rows[::2], rows[1::2]):
    ratios.setdefault(quiet["arm"], []).append(
        round(churn["p99_ms"] / quiet["p99_ms"], 2))
  summary = {"churn_p99_over_quiet_p99": ratios,
             "median": {arm: round(float(np.median(r)), 2)
                        for arm, r in ratios.items()},
             "cpu": machine.cpu_model(), "load_average": os.getloadavg()}
  machine.print_rows(rows, lambda r: (
      f"{r['arm']:<20} {r['phase']:<5} {r['requests']:>6} requests of A, "
      f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms (during B's load "
      f"{r['p99_during_b_load_ms']}, B's request "
      f"{r['p99_during_b_request_ms']}); B loaded and unloaded "
      f"{r['b_load_unload_cycles']} times; servers {r['servers_cores']} "
      f"cores, others {r['others_cores']}"), summary,
                     _FORMAT.value == "json")


if __name__ == "__main__":
  app.run(main)
