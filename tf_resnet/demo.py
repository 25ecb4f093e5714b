r"""The serving half of `make demo`: serve an export, classify held-out images over gRPC.

Starts `tf_resnet.serving.server` on free local ports (gRPC and REST) with
the export, writes a few held-out test images of the data set as PNG files,
classifies them with `tf_resnet.serving.client` (one Classify request through
the standard tensorflow-serving-api stubs, then through the REST API), prints
the answers and the accuracy, and stops the server with SIGTERM.

  python -m tf_resnet.demo --export_dir=/tmp/tf_resnet_demo/export \
      --dataset=digits --count=12
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import tensorflow as tf

from tf_resnet import cli
from tf_resnet.data import sources
# pylint: enable=g-import-not-at-top,g-bad-import-order

_EXPORT_DIR = flags.DEFINE_string("export_dir", None,
                                  "A model base path (tf_resnet.export).")
_DATASET = flags.DEFINE_string("dataset", "digits",
                               "Where the held-out images come from.")
_COUNT = flags.DEFINE_integer("count", 12, "Images to classify.")
flags.mark_flag_as_required("export_dir")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_for_port(port: int, server: subprocess.Popen, timeout: float) -> None:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if server.poll() is not None:
      cli.fail(f"the server exited with status {server.returncode}")
    with socket.socket() as s:
      if s.connect_ex(("127.0.0.1", port)) == 0:
        return
    time.sleep(0.2)
  cli.fail(f"the server did not listen on port {port} within {timeout} s")


def main(argv):
  del argv
  source = sources.parse(_DATASET.value)
  folder = tempfile.mkdtemp(prefix="tf_resnet_demo_images_")
  paths, truth = [], []
  n = source.num_examples("test")
  for i in range(min(_COUNT.value, n)):
    index = i * (n // _COUNT.value)
    image, label = source.load("test", tf.constant(index))
    data = (image if source.encoded else tf.io.encode_png(image)).numpy()
    paths.append(os.path.join(folder, f"test_{index:04d}.png"))
    truth.append(source.class_names[int(label)])
    with open(paths[-1], "wb") as f:
      f.write(data)
  port, rest_port = _free_port(), _free_port()
  server = subprocess.Popen(
      [sys.executable, "-m", "tf_resnet.serving.server", f"--port={port}",
       f"--rest_api_port={rest_port}", "--model_name=demo",
       f"--model_base_path={_EXPORT_DIR.value}", "--request_log_level=warning"])
  try:
    _wait_for_port(port, server, timeout=180)
    _wait_for_port(rest_port, server, timeout=30)
    for api, address, extra in (("gRPC", port, []),
                                ("REST", rest_port, ["--rest"])):
      result = subprocess.run(
          [sys.executable, "-m", "tf_resnet.serving.client",
           f"--server=127.0.0.1:{address}", "--model_name=demo",
           "--format=json", *extra, *paths],
          capture_output=True, text=True, check=False)
      if result.returncode:
        cli.fail(f"the {api} client failed: {result.stderr.strip()[-2000:]}")
      records = [json.loads(line) for line in result.stdout.splitlines()]
      correct = 0
      print(f"Classified {len(records)} held-out {source.name} images "
            f"through the server's {api} API on port {address}:")
      for record, label in zip(records, truth):
        ok = record["classes"][0] == label
        correct += ok
        top = ", ".join(f"{c} {s:.2f}" for c, s in zip(record["classes"],
                                                      record["scores"]))
        print(f"  {record['image']}: true {label}; top: {top}"
              f"{'' if ok else '  (wrong)'}")
      print(f"{api} accuracy: {correct}/{len(records)} = "
            f"{correct / len(records):.2f}")
  finally:
    server.send_signal(signal.SIGTERM)
    try:
      server.wait(timeout=60)
    except subprocess.TimeoutExpired:
      server.kill()


if __name__ == "__main__":
  app.run(main)
