r"""Classifies image files through a TensorFlow Serving gRPC server.

  python -m tf_resnet.serving.client --server=localhost:8500 \
      --model_name=resnet cat.jpg dog.png

Sends one Classify request (a tf.Example with `image/encoded` per image) with
the standard tensorflow-serving-api stubs and prints each image's top classes
and scores. Works against tf_resnet's server and tensorflow_model_server.
"""

import json
import os
import sys

from absl import app
from absl import flags
import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.serving import protocol

_SERVER = flags.DEFINE_string("server", "localhost:8500", "HOST:PORT.")
_MODEL_NAME = flags.DEFINE_string("model_name", "default", "Model name.")
_SIGNATURE = flags.DEFINE_string("signature_name", "serving_default",
                                 "A classify signature of the model.")
_VERSION = flags.DEFINE_integer("version", None, "Model version (default: "
                                "the latest the server has).")
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Seconds to wait.")
_ROOT_CERT = flags.DEFINE_string(
    "ssl_root_cert", None,
    "PEM file of the CA that signed the server's certificate: use TLS.")
_CLIENT_CERT = flags.DEFINE_string(
    "ssl_client_cert", None, "PEM certificate to present to the server.")
_CLIENT_KEY = flags.DEFINE_string("ssl_client_key", None,
                                  "PEM private key of --ssl_client_cert.")
_FORMAT = flags.DEFINE_enum("format", "text", ["text", "json"], "Output.")


def _read(path):
  if path is None:
    return None
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    sys.exit(f"error: cannot read {path}: {e.strerror}")


def _channel() -> grpc.Channel:
  if not _ROOT_CERT.value:
    if _CLIENT_CERT.value or _CLIENT_KEY.value:
      sys.exit("error: --ssl_client_cert and --ssl_client_key need "
               "--ssl_root_cert")
    return grpc.insecure_channel(_SERVER.value)
  if bool(_CLIENT_CERT.value) != bool(_CLIENT_KEY.value):
    sys.exit("error: give both --ssl_client_cert and --ssl_client_key, or "
             "neither")
  credentials = grpc.ssl_channel_credentials(
      root_certificates=_read(_ROOT_CERT.value),
      private_key=_read(_CLIENT_KEY.value),
      certificate_chain=_read(_CLIENT_CERT.value))
  return grpc.secure_channel(_SERVER.value, credentials)


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give one or more image files")
  images = []
  for path in paths:
    try:
      with open(path, "rb") as f:
        images.append(f.read())
    except OSError as e:
      sys.exit(f"error: cannot read {path}: {e.strerror}")
  request = protocol.classify_request(images, _MODEL_NAME.value, _SIGNATURE.value,
                             _VERSION.value)
  with _channel() as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      response = stub.Classify(request, timeout=_TIMEOUT.value)
    except grpc.RpcError as e:
      sys.exit(f"error: {e.code().name}: {e.details()}")
  spec = response.model_spec
  records = []
  for path, result in zip(paths, response.result.classifications):
    records.append({"image": os.path.basename(path),
                    "classes": [c.label for c in result.classes],
                    "scores": [round(c.score, 4) for c in result.classes]})
  if _FORMAT.value == "json":
    for r in records:
      print(json.dumps({**r, "model": spec.name,
                        "version": spec.version.value}))
    return
  print(f"{spec.name} version {spec.version.value}, signature "
        f"{spec.signature_name}:")
  for r in records:
    top = ", ".join(f"{label} {score:.3f}"
                    for label, score in zip(r["classes"], r["scores"]))
    print(f"  {r['image']}: {top}")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
