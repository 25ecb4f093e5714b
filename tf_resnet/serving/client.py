r"""Classifies image files through a TensorFlow Serving gRPC server.

  python -m tf_resnet.serving.client --server=localhost:8500 \
      --model_name=resnet cat.jpg dog.png

Sends one Classify request (a tf.Example with `image/encoded` per image) with
the standard tensorflow-serving-api stubs (or, with --rest, TF Serving's REST
classify API) and prints each image's top classes and scores. Works against
tf_resnet's server and tensorflow_model_server.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request

from tf_resnet import startup

startup.prepare_tensorflow()  # tensorflow_serving.apis imports TensorFlow.

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.serving import protocol
# pylint: enable=g-import-not-at-top,g-bad-import-order

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
_REST = flags.DEFINE_bool(
    "rest", False, "Use TF Serving's REST API (--server is then the REST "
    "port's HOST:PORT) instead of gRPC.")


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


def _classify_grpc(paths, images):
  request = protocol.classify_request(images, _MODEL_NAME.value,
                                      _SIGNATURE.value, _VERSION.value)
  with _channel() as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      response = stub.Classify(request, timeout=_TIMEOUT.value)
    except grpc.RpcError as e:
      sys.exit(f"error: {e.code().name}: {e.details()}")
  spec = response.model_spec
  records = [{"image": os.path.basename(path),
              "classes": [c.label for c in result.classes],
              "scores": [round(c.score, 4) for c in result.classes]}
             for path, result in zip(paths, response.result.classifications)]
  return spec.name, spec.version.value, spec.signature_name, records


def _classify_rest(paths, images):
  """TF Serving's REST classify: examples with base64 `image/encoded`."""
  if _ROOT_CERT.value:
    sys.exit("error: --rest has no TLS (as TF Serving's REST API)")
  url = f"http://{_SERVER.value}/v1/models/{_MODEL_NAME.value}"
  if _VERSION.value is not None:
    url += f"/versions/{_VERSION.value}"
  body = {"signature_name": _SIGNATURE.value,
          "examples": [{protocol.IMAGE_FEATURE: {
              "b64": base64.b64encode(data).decode()}} for data in images]}
  request = urllib.request.Request(
      url + ":classify", data=json.dumps(body).encode(),
      headers={"Content-Type": "application/json"}, method="POST")
  try:
    with urllib.request.urlopen(request, timeout=_TIMEOUT.value) as reply:
      results = json.load(reply)["results"]
  except urllib.error.HTTPError as e:
    sys.exit(f"error: HTTP {e.code}: "
             f"{json.loads(e.read() or b'{}').get('error', e.reason)}")
  except (urllib.error.URLError, OSError) as e:
    sys.exit(f"error: cannot reach {url}: {e}")
  records = [{"image": os.path.basename(path),
              "classes": [label for label, _ in result],
              "scores": [round(score, 4) for _, score in result]}
             for path, result in zip(paths, results)]
  return _MODEL_NAME.value, _VERSION.value, records


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
  if _REST.value:
    name, version, records = _classify_rest(paths, images)
    signature = _SIGNATURE.value
  else:
    name, version, signature, records = _classify_grpc(paths, images)
  if _FORMAT.value == "json":
    for r in records:
      print(json.dumps({**r, "model": name, "version": version}))
    return
  print(f"{name} version {version if version is not None else '(latest)'}, "
        f"signature {signature}:")
  for r in records:
    top = ", ".join(f"{label} {score:.3f}"
                    for label, score in zip(r["classes"], r["scores"]))
    print(f"  {r['image']}: {top}")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
