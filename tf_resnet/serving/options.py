"""TF Serving's text-format option files: SSLConfig and BatchingParameters.

tensorflow-serving-api does not ship these two messages, so they are declared
here with TF Serving's field names and types (ssl_config.proto,
session_bundle_config.proto) and parsed with protobuf's own text format: a
file written for `tensorflow_model_server` reads the same here.
"""

import dataclasses
import os
from typing import Optional

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _messages():
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  proto = descriptor_pb2.FileDescriptorProto(
      name="tf_resnet_serving_options.proto", package="tensorflow.serving",
      dependency=["google/protobuf/wrappers.proto"], syntax="proto3")
  ssl = proto.message_type.add(name="SSLConfig")
  for number, name, kind in ((1, "server_key", _F.TYPE_STRING),
                             (2, "server_cert", _F.TYPE_STRING),
                             (3, "custom_ca", _F.TYPE_STRING),
                             (4, "client_verify", _F.TYPE_BOOL)):
    ssl.field.add(name=name, number=number, type=kind,
                  label=_F.LABEL_OPTIONAL)
  batching = proto.message_type.add(name="BatchingParameters")
  for number, name, wrapper in ((1, "max_batch_size", "Int64Value"),
                                (2, "batch_timeout_micros", "Int64Value"),
                                (3, "max_enqueued_batches", "Int64Value"),
                                (4, "num_batch_threads", "Int64Value"),
                                (5, "thread_pool_name", "StringValue")):
    batching.field.add(name=name, number=number, type=_F.TYPE_MESSAGE,
                       type_name=f".google.protobuf.{wrapper}",
                       label=_F.LABEL_OPTIONAL)
  batching.field.add(name="allowed_batch_sizes", number=6,
                     type=_F.TYPE_INT64, label=_F.LABEL_REPEATED)
  batching.field.add(name="pad_variable_length_inputs", number=7,
                     type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
  for number, name, wrapper in ((8, "enable_large_batch_splitting",
                                 "BoolValue"),
                                (9, "max_execution_batch_size",
                                 "Int64Value")):
    batching.field.add(name=name, number=number, type=_F.TYPE_MESSAGE,
                       type_name=f".google.protobuf.{wrapper}",
                       label=_F.LABEL_OPTIONAL)
  pool.Add(proto)
  get = lambda n: message_factory.GetMessageClass(
      pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))
  return get("SSLConfig"), get("BatchingParameters")


SSLConfig, BatchingParametersProto = _messages()


def _cpus() -> int:
  """Schedulable CPUs, TF Serving's default number of batch threads."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  """How concurrent requests are merged: every field of TF Serving's message.

  The defaults are TF Serving's (TensorFlow's SharedBatchScheduler queue
  options and the model server's shared pool of batch threads, one per
  schedulable CPU). Validation follows batching_session.cc.

  Attributes:
    max_batch_size: largest request (with splitting) or batch (without).
    batch_timeout_micros: how long a batch may wait to fill.
    max_enqueued_batches: per queue; a request that does not fit is refused
      with UNAVAILABLE.
    num_batch_threads: threads of the one scheduler all queues share.
    thread_pool_name: the name of those threads.
    allowed_batch_sizes: increasing; batches are padded up to the next one.
    pad_variable_length_inputs: pad each request's inputs in dimensions 1...
      to the largest in the batch, so requests of different lengths batch.
    enable_large_batch_splitting: split a request larger than the room left
      in a batch (and larger than max_execution_batch_size) across batches.
    max_execution_batch_size: with splitting, the largest batch run.
  """

  max_batch_size: int = 1000
  batch_timeout_micros: int = 0
  max_enqueued_batches: int = 10
  num_batch_threads: int = dataclasses.field(default_factory=_cpus)
  thread_pool_name: str = "batch_threads"
  allowed_batch_sizes: tuple[int, ...] = ()
  pad_variable_length_inputs: bool = False
  enable_large_batch_splitting: bool = False
  max_execution_batch_size: Optional[int] = None

  def __post_init__(self):
    object.__setattr__(self, "allowed_batch_sizes",
                       tuple(int(s) for s in self.allowed_batch_sizes))
    for name in ("max_batch_size", "max_enqueued_batches",
                 "num_batch_threads"):
      if getattr(self, name) < 1:
        raise ValueError(f"batching parameter {name} must be positive, not "
                         f"{getattr(self, name)}")
    if self.batch_timeout_micros < 0:
      raise ValueError("batching parameter batch_timeout_micros must be "
                       f">= 0, not {self.batch_timeout_micros}")
    if self.max_execution_batch_size is not None:
      if self.max_execution_batch_size < 1:
        raise ValueError("batching parameter max_execution_batch_size must "
                         f"be positive, not {self.max_execution_batch_size}")
      if (self.enable_large_batch_splitting and
          self.max_execution_batch_size > self.max_batch_size):
        raise ValueError(
            "When enable_large_batch_splitting is true, max_batch_size must "
            "be greater than or equal to max_execution_batch_size "
            f"({self.max_batch_size} < {self.max_execution_batch_size})")
    sizes = self.allowed_batch_sizes
    if not sizes:
      return
    if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
      raise ValueError("allowed_batch_sizes entries must be monotonically "
                       f"increasing positive numbers, not {list(sizes)}")
    if self.enable_large_batch_splitting:
      if sizes[-1] > self.max_batch_size:
        raise ValueError(
            "Last entry in allowed_batch_sizes must be less than or equal to "
            f"max_batch_size; last entry was {sizes[-1]}; expected "
            f"{self.max_batch_size}")
      if sizes[-1] != self.execution_batch_size:
        raise ValueError(
            "Last entry in allowed_batch_sizes must be equal to "
            f"max_execution_batch_size; last entry was {sizes[-1]}; "
            f"expected {self.execution_batch_size}")
    elif sizes[-1] != self.max_batch_size:
      raise ValueError(
          "Last entry in allowed_batch_sizes must match max_batch_size; last "
          f"entry was {sizes[-1]}; expected {self.max_batch_size}")

  @property
  def execution_batch_size(self) -> int:
    """The largest batch the model runs on."""
    if self.enable_large_batch_splitting:
      return self.max_execution_batch_size or self.max_batch_size
    return self.max_batch_size

  @property
  def input_size_limit(self) -> int:
    """The largest request accepted."""
    return self.max_batch_size

  def padded_size(self, size: int) -> int:
    """The smallest allowed batch size >= `size` (`size` if none are set)."""
    for allowed in self.allowed_batch_sizes:
      if allowed >= size:
        return allowed
    return size


_WRAPPED = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
            "num_batch_threads", "thread_pool_name",
            "enable_large_batch_splitting", "max_execution_batch_size")


def parse_batching(text: Optional[str]) -> BatchingParameters:
  """BatchingParameters from a text-format file's contents (None: defaults).

  Raises:
    text_format.ParseError: for text that is not a BatchingParameters.
    ValueError: for values TF Serving refuses.
  """
  if not text:
    return BatchingParameters()
  proto = text_format.Parse(text, BatchingParametersProto())
  values = {name: getattr(proto, name).value for name in _WRAPPED
            if proto.HasField(name)}
  return BatchingParameters(
      allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
      pad_variable_length_inputs=proto.pad_variable_length_inputs, **values)


def parse_ssl(text: str):
  """An SSLConfig from a text-format file's contents.

  Raises:
    ValueError: without a server key and certificate.
  """
  config = text_format.Parse(text, SSLConfig())
  if not config.server_key or not config.server_cert:
    raise ValueError("the SSL config needs server_key and server_cert (the "
                     "PEM contents)")
  if config.client_verify and not config.custom_ca:
    raise ValueError("client_verify needs custom_ca, the CA that signs the "
                     "clients' certificates")
  return config
