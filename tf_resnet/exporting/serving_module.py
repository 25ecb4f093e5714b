"""The exported model: the paper's preprocessing and multi-scale testing inside the graph.

A `ServingModule` wraps a trained network with everything a caller would
otherwise need to know: decoding (grayscale and alpha to RGB), the run's
per-pixel mean, the fully-convolutional evaluation of each image at each test
scale (and, optionally, mirrored), the softmax, the averaging of scores over
scales, and the class names. Its signatures follow tf.estimator's
ClassificationOutput and PredictOutput, so TensorFlow Serving's Classify and
Predict APIs take them as they are:

* `serving_default`, `classification` (classify method): `inputs`, serialized
  `tf.Example`s whose `image/encoded` is a JPEG or PNG; outputs `classes`
  (label names) and `scores` (probabilities), [N, K], best first.
* `predict`: `image_bytes` [N]; outputs `probabilities` [N, C], `classes`
  (int64 top-1), `top_k_classes`, `top_k_scores`, `labels` (top-k names).
  With `serving_default="predict"`, `serving_default` is this signature too:
  the interface of the Estimator-era `official/r1/resnet` export that TF
  Serving's ResNet tutorial and its pre-2021 example clients were written
  for (`image_bytes` -> `classes`, `probabilities`; the Estimator exported
  `predict` and `serving_default` as the same signature).
* `predict_images`: decoded uint8 images [N, H, W, 3]; the same outputs.
* `classify_single_view`, `predict_single_view`: one view per image (the
  centre crop on ImageNet, the image itself on CIFAR), for latency-bound
  callers.

Every image is processed at its own size: a request may mix sizes.
"""

from typing import Optional, Sequence

import tensorflow as tf

from tf_resnet import families
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from tf_resnet.data import transforms

IMAGE_FEATURE = "image/encoded"
# The type the network computes in, by `precision`.
PRECISIONS = {"float32": tf.float32, "bfloat16": tf.bfloat16,
              "float16": tf.float16}
# What `serving_default` can be: the classify signature (tf.Example in,
# label names and scores out) or the predict one (image bytes in).
SERVING_DEFAULTS = ("classify", "predict")
# Batch sizes of the recorded warm-up requests: one, and a small batch.
WARMUP_BATCH_SIZES = (1, 2)


def _check_image(data: tf.Tensor) -> tf.Tensor:
  """Fails the call with InvalidArgument unless `data` looks like a JPEG or PNG."""
  head = tf.strings.substr(data, 0, 8)
  ok = tf.logical_or(tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"),
                     tf.equal(head, b"\x89PNG\r\n\x1a\n"))
  with tf.control_dependencies([tf.debugging.Assert(
      ok, ["an image is neither a JPEG nor a PNG (first bytes:",
           tf.strings.substr(data, 0, 4), ")"])]):
    return tf.identity(data)


class ServingModule(tf.Module):
  """A trained network with its preprocessing, for export."""

  def __init__(self, model: tf.Module, *, family: str,
               mean_image, labels: Sequence[str], scales: Sequence[int],
               flip: bool = False, top_k: int = 5,
               precision: str = "float32", serving_default: str = "classify",
               name: str = "serving"):
    """Wraps a network.

    Args:
      model: the trained network, `model(images, is_training=False)`.
      family: `imagenet` or `cifar`: which preprocessing.
      mean_image: the run's per-pixel mean, [S, S, 3].
      labels: class names, one per output.
      scales: shorter sides of the multi-scale views (ImageNet); CIFAR uses
        its native 32x32 view.
      flip: also average the mirrored views.
      top_k: classes returned per image.
      precision: `float32`, or `bfloat16` / `float16`: the network computes
        in that type (its variables stay float32 and are cast as training's
        mixed precision does); preprocessing, softmax and every output stay
        float32, as the signatures promise.
      serving_default: which signature `serving_default` is: `classify`
        (as `classification`) or `predict` (as `predict`: TF Serving's
        ResNet tutorial's interface).
      name: module name.

    Raises:
      ValueError: if the labels do not match the network's outputs, or for
        a bad `top_k`, scale, precision or `serving_default`.
    """
    super().__init__(name=name)
    num_classes = model.num_classes
    if len(labels) != num_classes:
      raise ValueError(f"{len(labels)} labels for a network with "
                       f"{num_classes} outputs")
    if not 1 <= top_k <= num_classes:
      raise ValueError(f"`top_k` must be in [1, {num_classes}], not {top_k}")
    facts = families.get(family)
    if facts.multiscale_testing and min(scales) < facts.input_size:
      raise ValueError(f"ImageNet scales must be at least "
                       f"{facts.input_size}, not {min(scales)}")
    if precision not in PRECISIONS:
      raise ValueError(f"`precision` must be one of {tuple(PRECISIONS)}, "
                       f"not {precision!r}")
    if serving_default not in SERVING_DEFAULTS:
      raise ValueError(f"`serving_default` must be one of {SERVING_DEFAULTS}, "
                       f"not {serving_default!r}")
    self.serving_default = serving_default
    self.model = model
    self.compute_dtype = PRECISIONS[precision]
    self.family = family
    self.scales = tuple(int(s) for s in scales)
    self.flip = flip
    self.top_k = top_k
    self.num_classes = num_classes
    self.mean_image = tf.Variable(tf.constant(mean_image, tf.float32),
                                  trainable=False, name="mean_image")
    self.labels = tf.Variable(tf.constant(list(labels), tf.string),
                              trainable=False, name="labels")

  @property
  def classify_signatures(self) -> tuple[str, ...]:
    """Keys of the classify signatures (tf.Example in), in export order."""
    keys = ("classification", "classify_single_view")
    return (("serving_default",) + keys if self.serving_default == "classify"
            else keys)

  @property
  def predict_bytes_signatures(self) -> tuple[str, ...]:
    """Keys of the predict signatures on image bytes, in export order."""
    keys = ("predict", "predict_single_view")
    return (keys if self.serving_default == "classify"
            else ("serving_default",) + keys)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3],
                                              tf.float32, name="views")])
  def _probabilities(self, views: tf.Tensor) -> tf.Tensor:
    # One function in the SavedModel's library, called wherever a signature
    # runs the network (each scale of each multi-scale signature, the
    # single-view ones): inlined instead, a ResNet-50 export held ~20 copies
    # of the network, 4.9 MB of GraphDef that every load imports (holding
    # the GIL in a Python server; docs/performance.md).
    logits = self.model(tf.cast(views, self.compute_dtype), is_training=False)
    return tf.nn.softmax(tf.cast(logits, tf.float32))

  def multiscale_scores(self, image: tf.Tensor, encoded: bool) -> tf.Tensor:
    """Scores [C] of one image: the paper's fully-convolutional multi-scale test."""
    if not families.get(self.family).multiscale_testing:
      return self.single_view_scores(image, encoded)
    views = transforms.multiscale_views(image, self.mean_image,
                                        encoded=encoded, scales=self.scales,
                                        flip=self.flip)
    per_scale = [tf.reduce_mean(self._probabilities(v), axis=0)
                 for v in views]
    return tf.reduce_mean(tf.stack(per_scale), axis=0)

  def single_view(self, image: tf.Tensor, encoded: bool) -> tf.Tensor:
    """The single test view of one image."""
    return transforms.single_view(image, self.mean_image, self.family,
                                  encoded=encoded)

  def single_view_scores(self, image: tf.Tensor, encoded: bool) -> tf.Tensor:
    return self._probabilities(self.single_view(image, encoded)[None])[0]

  def _map(self, fn, images: tf.Tensor, encoded: bool) -> tf.Tensor:
    if encoded:
      images = tf.map_fn(_check_image, images)
    return tf.map_fn(lambda x: fn(x, encoded), images,
                     fn_output_signature=tf.TensorSpec([self.num_classes],
                                                       tf.float32))

  def _single_view_batch(self, images: tf.Tensor, encoded: bool) -> tf.Tensor:
    # Views share one size, so the network runs once on the whole batch.
    if encoded:
      images = tf.map_fn(_check_image, images)
    views = tf.map_fn(lambda x: self.single_view(x, encoded), images,
                      fn_output_signature=tf.float32,
                      parallel_iterations=16)
    return self._probabilities(views)

  def _predict_outputs(self, probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
    top = tf.math.top_k(probabilities, k=self.top_k)
    indices = tf.cast(top.indices, tf.int64)
    return {"probabilities": probabilities,
            "classes": indices[:, 0],
            "top_k_classes": indices,
            "top_k_scores": top.values,
            "labels": tf.gather(self.labels, top.indices)}

  def _classify_outputs(self, probabilities: tf.Tensor
                        ) -> dict[str, tf.Tensor]:
    top = tf.math.top_k(probabilities, k=self.top_k)
    return {"classes": tf.gather(self.labels, top.indices),
            "scores": top.values}

  @staticmethod
  def _parse(serialized: tf.Tensor) -> tf.Tensor:
    features = tf.io.parse_example(
        serialized, {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
    return features[IMAGE_FEATURE]

  def signatures(self) -> dict[str, tf.types.experimental.PolymorphicFunction]:
    """The functions to export, by signature key."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name="inputs")])
    def classify(inputs):
      images = self._parse(inputs)
      return self._classify_outputs(
          self._map(self.multiscale_scores, images, encoded=True))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name="inputs")])
    def classify_single_view(inputs):
      return self._classify_outputs(
          self._single_view_batch(self._parse(inputs), encoded=True))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name="image_bytes")])
    def predict(image_bytes):
      return self._predict_outputs(
          self._map(self.multiscale_scores, image_bytes, encoded=True))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3],
                                                tf.uint8, name="images")])
    def predict_images(images):
      return self._predict_outputs(
          self._map(self.multiscale_scores, images, encoded=False))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name="image_bytes")])
    def predict_single_view(image_bytes):
      return self._predict_outputs(
          self._single_view_batch(image_bytes, encoded=True))

    # tf.functions with input signatures, not concrete functions: only those
    # can be saved when the network's variables are distributed.
    return {
        "serving_default": (classify if self.serving_default == "classify"
                            else predict),
        "classification": classify,
        "classify_single_view": classify_single_view,
        "predict": predict,
        "predict_images": predict_images,
        "predict_single_view": predict_single_view,
    }


def _warmup_image(size: int, seed: int) -> tf.Tensor:
  """A deterministic RGB image, [size, size, 3] uint8."""
  return tf.cast(tf.random.stateless_uniform([size, size, 3], [seed, 7],
                                             maxval=256, dtype=tf.int32),
                 tf.uint8)


def warmup_requests(module: ServingModule, model_name: str
                    ) -> list[prediction_log_pb2.PredictionLog]:
  """TF Serving's warm-up records: real requests for each signature.

  TensorFlow Serving (and this project's server) replay these from
  `assets.extra/tf_serving_warmup_requests` before a version takes traffic,
  so the first client does not pay for tracing and kernel selection. Each
  signature gets a request of one image and one of a small batch.

  Args:
    module: the exported module (its family sets the image size).
    model_name: the name recorded in each request's ModelSpec (the server
      runs them on the loading version whatever the name).

  Returns:
    PredictionLogs: classify requests for the classify signatures, predict
    requests for the others.
  """
  size = families.get(module.family).input_size
  logs = []
  for batch in WARMUP_BATCH_SIZES:
    pixels = [_warmup_image(size, seed) for seed in range(batch)]
    pngs = [tf.io.encode_png(p).numpy() for p in pixels]
    for key in module.classify_signatures:
      log = prediction_log_pb2.PredictionLog()
      request = log.classify_log.request
      request.model_spec.name = model_name
      request.model_spec.signature_name = key
      for png in pngs:
        example = request.input.example_list.examples.add()
        example.features.feature[IMAGE_FEATURE].bytes_list.value.append(png)
      logs.append(log)
    inputs = {key: ("image_bytes", tf.make_tensor_proto(pngs))
              for key in module.predict_bytes_signatures}
    inputs["predict_images"] = ("images",
                                tf.make_tensor_proto(tf.stack(pixels)))
    for key, (alias, tensor) in inputs.items():
      log = prediction_log_pb2.PredictionLog()
      request = log.predict_log.request
      request.model_spec.name = model_name
      request.model_spec.signature_name = key
      request.inputs[alias].CopyFrom(tensor)
      logs.append(log)
  return logs


def for_run(model: tf.Module, family: str, mean_image, labels: Sequence[str],
            scales: Optional[Sequence[int]] = None, flip: bool = False,
            top_k: int = 5, precision: str = "float32",
            serving_default: str = "classify") -> ServingModule:
  """A ServingModule with the family's defaults: the paper's five test scales on ImageNet."""
  if not scales:
    facts = families.get(family)
    scales = facts.test_scales or (facts.input_size,)
  return ServingModule(model, family=family, mean_image=mean_image,
                       labels=labels, scales=scales, flip=flip,
                       top_k=min(top_k, len(labels)), precision=precision,
                       serving_default=serving_default)
