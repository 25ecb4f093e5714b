"""SavedModel warm-up as TF Serving does it: replaying recorded requests.

TF Serving reads `assets.extra/tf_serving_warmup_requests` from a version's
directory, a TFRecord file of `tensorflow.serving.PredictionLog`s, and runs
each request against the version before it takes traffic
(saved_model_warmup_util.cc), so lazy initialisation (tf.function tracing,
kernel selection) is paid before the first real request. A version without
the file gets no warm-up; a request that fails fails the load. The log lines
are TF Serving's, which its docs (saved_model_warmup.md) and the ResNet
tutorial's resnet_warmup.py tell users to look for: `No warmup data file
found at ...`, `Starting to read warmup data for model at ...`, `Finished
reading warmup data for model at ... Number of warmup records read: N.
Elapsed time (microseconds): T.`
"""

import logging
import os
import time
from typing import Iterable

import grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tf_resnet.serving import errors
from tf_resnet.serving import services

WARMUP_DIRECTORY = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
# TF Serving's limit (saved_model_warmup_util.cc: kMaxNumRecords).
MAX_RECORDS = 1000
_LOG = logging.getLogger("tf_resnet.serving")


def options_text(iterations: int) -> str:
  """ModelWarmupOptions' DebugString as TF Serving logs it.

  The server sets `num_request_iterations` only from a positive
  --num_request_iterations_for_warmup (model_servers/server.cc); unset, the
  options print as nothing.
  """
  if iterations <= 0:
    return ""
  return f"num_request_iterations {{\n  value: {iterations}\n}}\n"


def warmup_path(version_dir: str) -> str:
  """Where TF Serving looks for a version's warm-up requests."""
  return os.path.join(version_dir, WARMUP_DIRECTORY, WARMUP_FILE)


def write(version_dir: str,
          logs: Iterable[prediction_log_pb2.PredictionLog]) -> str:
  """Writes `logs` as a version's warm-up file; returns its path."""
  path = warmup_path(version_dir)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as f:
    for log in logs:
      f.write(log.SerializeToString())
  return path


def read(version_dir: str) -> list[prediction_log_pb2.PredictionLog]:
  """The warm-up requests of a version ([] without the file).

  Raises:
    ValueError: for more than MAX_RECORDS records or an unreadable record.
  """
  path = warmup_path(version_dir)
  if not tf.io.gfile.exists(path):
    return []
  logs = []
  for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
    if len(logs) == MAX_RECORDS:
      raise ValueError(f"Number of warmup records exceeds the maximum "
                       f"({MAX_RECORDS}) at {path}")
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(record)
    logs.append(log)
  return logs


class _OneServable:
  """What `services` resolves a ModelSpec against: this one version, whatever
  name or version the recorded request names (TF Serving does the same)."""

  def __init__(self, servable):
    self._servable = servable

  def model(self, name: str):
    del name
    return self

  def resolve(self, version=None, label=None):
    del version, label
    return self._servable


_HANDLERS = {
    "classify_log": services.handle_classify,
    "regress_log": services.handle_regress,
    "predict_log": services.handle_predict,
    "multi_inference_log": services.handle_multi_inference,
}


def replay(servable, iterations: int = 0) -> int:
  """Runs a version's warm-up requests, logging as TF Serving does.

  Args:
    servable: the loaded version (`servable.Servable`).
    iterations: runs per request (TF Serving's
      --num_request_iterations_for_warmup; 0, unset, means once).

  Returns:
    How many warm-up records were read (each ran `iterations` times).

  Raises:
    errors.ServingError: for a request that fails or a log type TF Serving
      does not replay (session_run_log).
    ValueError: for an unreadable warm-up file.
  """
  began = time.monotonic()
  path = warmup_path(servable.path)
  # The texts of saved_model_warmup_util.cc, RunSavedModelWarmupUntracked.
  if not tf.io.gfile.exists(path):
    _LOG.info("No warmup data file found at %s", path)
    return 0
  _LOG.info("Starting to read warmup data for model at %s with "
            "model-warmup-options %s", path, options_text(iterations))
  models = _OneServable(servable)
  records = 0
  for log in read(servable.path):
    kind = log.WhichOneof("log_type")
    handler = _HANDLERS.get(kind)
    if handler is None:
      raise errors.ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                f"Unsupported log_type for warmup: {kind}")
    request = getattr(log, kind).request
    # TF Serving runs the request on this version whatever its ModelSpec
    # says; the handlers only need a name (and, MultiInference, per task).
    specs = ([t.model_spec for t in request.tasks] if kind ==
             "multi_inference_log" else [request.model_spec])
    for spec in specs:
      spec.name = spec.name or servable.name
    for _ in range(max(1, iterations)):
      handler(models, request)
    records += 1
  micros = int((time.monotonic() - began) * 1e6)
  _LOG.info("Finished reading warmup data for model at %s. Number of warmup "
            "records read: %d. Elapsed time (microseconds): %d.", path,
            records, micros)
  return records
