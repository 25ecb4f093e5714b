"""TF Serving's text-format option files: SSLConfig and BatchingParameters.

tensorflow-serving-api does not ship these two messages, so they are declared
here with TF Serving's field names and types (ssl_config.proto,
session_bundle_config.proto) and parsed with protobuf's own text format: a
file written for `tensorflow_model_server` reads the same here.
"""

import dataclasses
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
  pool.Add(proto)
  get = lambda n: message_factory.GetMessageClass(
      pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))
  return get("SSLConfig"), get("BatchingParameters")


SSLConfig, BatchingParametersProto = _messages()


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  """How concurrent requests are merged (TF Serving's defaults)."""

  max_batch_size: int = 1000
  batch_timeout_micros: int = 0
  max_enqueued_batches: int = 100
  num_batch_threads: int = 1

  def __post_init__(self):
    for name in ("max_batch_size", "max_enqueued_batches",
                 "num_batch_threads"):
      if getattr(self, name) < 1:
        raise ValueError(f"batching parameter {name} must be positive, not "
                         f"{getattr(self, name)}")
    if self.batch_timeout_micros < 0:
      raise ValueError("batching parameter batch_timeout_micros must be "
                       f">= 0, not {self.batch_timeout_micros}")


def parse_batching(text: Optional[str]) -> BatchingParameters:
  """BatchingParameters from a text-format file's contents (None: defaults)."""
  if not text:
    return BatchingParameters()
  proto = text_format.Parse(text, BatchingParametersProto())
  values = {}
  for name in ("max_batch_size", "batch_timeout_micros",
               "max_enqueued_batches", "num_batch_threads"):
    if proto.HasField(name):
      values[name] = getattr(proto, name).value
  return BatchingParameters(**values)


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
