"""Exports against the evaluator, through TF2 and the Session loader, and as saved_model_cli sees them."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf
from tensorflow.python.saved_model import loader_impl  # pylint: disable=g-direct-tensorflow-import

from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import resnet
from tf_resnet.training import evaluation


def _example(data: bytes) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      "image/encoded": tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[data]))})).SerializeToString()


def _images(rng, shapes):
  """Encoded test images: JPEGs and PNGs, RGB, grayscale and RGBA."""
  out = []
  for i, (h, w, c) in enumerate(shapes):
    pixels = rng.randint(0, 256, [h, w, c]).astype(np.uint8)
    encode = tf.io.encode_png if i % 2 else tf.io.encode_jpeg
    out.append(encode(pixels).numpy())
  return out


def _folder(images) -> str:
  """A one-class image folder holding `images` in order (for the evaluator)."""
  root = tempfile.mkdtemp()
  for split in ("train", "test"):
    os.makedirs(os.path.join(root, split, "a"))
    for i, data in enumerate(images):
      ext = "png" if data[:4] == b"\x89PNG" else "jpg"
      with open(os.path.join(root, split, "a", f"{i:03d}.{ext}"), "wb") as f:
        f.write(data)
  return root


def _settle(net, size):
  """One training-mode call, so inference uses realistic BN statistics."""
  net(tf.random.normal([8, size, size, 3], stddev=60.0), is_training=True)
  return net


class CifarExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    rng = np.random.RandomState(0)
    # A fixed network: some random ones saturate the test images'
    # probabilities to one-hot, where bfloat16 and float32 agree to 1e-10
    # and the bfloat16 test could not tell them apart (seeds 0-7 of this
    # network: 1e-10 to 0.02; this one 0.02).
    tf.random.set_seed(1)
    cls.net = _settle(resnet.cifar_resnet(8), 32)
    cls.mean = rng.uniform(50, 200, [32, 32, 3]).astype(np.float32)
    cls.labels = [f"class_{i}" for i in range(10)]
    cls.module = serving_module.for_run(cls.net, "cifar", cls.mean,
                                        cls.labels, top_k=3)
    cls.base = tempfile.mkdtemp()
    cls.path = writer.write(cls.module, cls.base)
    cls.loaded = tf.saved_model.load(cls.path)
    cls.images = _images(rng, [(32, 32, 3), (40, 50, 4), (8, 8, 1),
                               (32, 32, 3)])

  def test_predict_equals_the_evaluator(self):
    out = self.loaded.signatures["predict"](
        image_bytes=tf.constant(self.images))
    source = sources.folder_source(_folder(self.images), family="cifar")
    statistics = stats_lib.Statistics(self.mean, np.ones(3), np.eye(3), 1,
                                      "data")
    ds = pipeline.eval_dataset(source, statistics, pipeline.InputConfig(1),
                               batch_size=8)
    views, _ = next(iter(ds))
    expected = evaluation.Evaluator(self.net, "center").scores(views)
    self.assertAllClose(out["probabilities"], expected, atol=1e-5)
    self.assertAllEqual(out["classes"], np.argmax(expected, axis=-1))
    self.assertEqual(out["labels"].shape, [4, 3])

  def test_classify_outputs_sorted_label_names(self):
    examples = tf.constant([_example(d) for d in self.images])
    out = self.loaded.signatures["serving_default"](inputs=examples)
    self.assertCountEqual(out.keys(), ["classes", "scores"])
    self.assertEqual(out["classes"].dtype, tf.string)
    self.assertEqual(out["scores"].shape, [4, 3])
    scores = out["scores"].numpy()
    self.assertTrue(np.all(np.diff(scores, axis=1) <= 0))
    predicted = self.loaded.signatures["predict"](
        image_bytes=tf.constant(self.images))
    self.assertAllEqual(out["classes"][:, 0],
                        [self.labels[i].encode()
                         for i in predicted["classes"].numpy()])
    single = self.loaded.signatures["classify_single_view"](inputs=examples)
    self.assertAllClose(single["scores"], out["scores"], atol=1e-5)

  def test_the_network_is_in_the_saved_model_once(self):
    # Every signature calls one function: inlined, each signature would
    # carry its own copy (an ImageNet export, ~20 copies of a ResNet-50,
    # 4.9 MB that every load imports).
    saved_model = loader_impl.parse_saved_model(self.path)
    graph_def = saved_model.meta_graphs[0].graph_def
    exported = sum(n.op == "Conv2D" for f in graph_def.library.function
                   for n in f.node_def)
    forward = tf.function(lambda x: self.net(x, is_training=False))
    traced = forward.get_concrete_function(
        tf.TensorSpec([None, 32, 32, 3])).graph.as_graph_def()
    convolutions = sum(n.op == "Conv2D" for n in traced.node)
    self.assertEqual(convolutions, 7)  # ResNet-8: 1 + 3 stages x 2.
    self.assertEqual(exported, convolutions)

  def test_predict_images_equals_predict_on_bytes(self):
    pixels = np.random.RandomState(1).randint(0, 256, [2, 32, 32, 3])
    pixels = pixels.astype(np.uint8)
    png = [tf.io.encode_png(p).numpy() for p in pixels]
    a = self.loaded.signatures["predict_images"](images=tf.constant(pixels))
    b = self.loaded.signatures["predict"](image_bytes=tf.constant(png))
    self.assertAllClose(a["probabilities"], b["probabilities"], atol=1e-6)

  def test_bfloat16_export_computes_in_bfloat16_and_answers_float32(self):
    module = serving_module.for_run(self.net, "cifar", self.mean,
                                    self.labels, top_k=3,
                                    precision="bfloat16")
    loaded = tf.saved_model.load(writer.write(module, tempfile.mkdtemp()))
    pixels = np.random.RandomState(2).randint(0, 256, [4, 32, 32, 3])
    images = tf.constant(pixels.astype(np.uint8))
    half = loaded.signatures["predict_images"](images=images)
    full = self.loaded.signatures["predict_images"](images=images)
    self.assertEqual(half["probabilities"].dtype, tf.float32)
    self.assertEqual(half["top_k_scores"].dtype, tf.float32)
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    self.assertAllClose(half["probabilities"], full["probabilities"],
                        atol=0.05)
    self.assertNotAllClose(half["probabilities"], full["probabilities"],
                           atol=1e-7, rtol=0)
    graph = loaded.signatures["predict_images"].graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function
                                for n in f.node_def]
    self.assertTrue(any(n.op == "Conv2D" and n.attr["T"].type == tf.bfloat16
                        for n in nodes), "no bfloat16 convolution in the graph")
    with self.assertRaisesRegex(ValueError, "`precision` must be one of"):
      serving_module.for_run(self.net, "cifar", self.mean, self.labels,
                             precision="int8")

  def test_corrupt_image_fails_the_call(self):
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "neither a JPEG nor a PNG"):
      self.loaded.signatures["predict"](
          image_bytes=tf.constant([self.images[0], b"not an image"]))
    with self.assertRaises(tf.errors.InvalidArgumentError):
      self.loaded.signatures["serving_default"](
          inputs=tf.constant([b"not a tf.Example"]))

  def test_session_loader_equals_tf2(self):
    examples = [_example(d) for d in self.images]
    expected = self.loaded.signatures["serving_default"](
        inputs=tf.constant(examples))
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
      meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], self.path)
      signature = meta.signature_def["serving_default"]
      self.assertEqual(signature.method_name, writer.CLASSIFY_METHOD)
      fetches = {k: v.name for k, v in signature.outputs.items()}
      got = sess.run(fetches, {signature.inputs["inputs"].name: examples})
    self.assertAllEqual(got["classes"], expected["classes"])
    self.assertAllClose(got["scores"], expected["scores"], atol=1e-6)

  def test_serving_default_predict_is_the_r1_interface_and_keeps_the_rest(self):
    # official/r1/resnet exported `predict` and `serving_default` as one
    # PredictOutput: `image_bytes` [None] strings in, `classes` (int64
    # argmax) and `probabilities` out. TF Serving's pre-2021 ResNet clients
    # call it so.
    module = serving_module.for_run(self.net, "cifar", self.mean,
                                    self.labels, top_k=3,
                                    serving_default="predict")
    path = writer.write(module, tempfile.mkdtemp())
    loaded = tf.saved_model.load(path)
    self.assertEqual(set(loaded.signatures), set(self.loaded.signatures))
    default = loaded.signatures["serving_default"]
    self.assertEqual(list(default.structured_input_signature[1]),
                     ["image_bytes"])
    spec = default.structured_input_signature[1]["image_bytes"]
    self.assertEqual((spec.dtype, spec.shape.as_list()), (tf.string, [None]))
    got = default(image_bytes=tf.constant(self.images))
    self.assertEqual(got["classes"].dtype, tf.int64)
    self.assertAllEqual(got["classes"],
                        np.argmax(got["probabilities"], axis=1))
    # The same numbers as today's `predict`, and the other signatures kept:
    # `classification` is still classify on tf.Example.
    want = self.loaded.signatures["predict"](image_bytes=tf.constant(
        self.images))
    self.assertAllClose(got["probabilities"], want["probabilities"],
                        atol=1e-6)
    examples = tf.constant([_example(d) for d in self.images])
    self.assertAllEqual(
        loaded.signatures["classification"](inputs=examples)["classes"],
        self.loaded.signatures["serving_default"](inputs=examples)["classes"])
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
      meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
      methods = {k: v.method_name for k, v in meta.signature_def.items()
                 if not k.startswith("__")}
    self.assertEqual(methods["serving_default"], "tensorflow/serving/predict")
    self.assertEqual(methods["classification"], writer.CLASSIFY_METHOD)
    self.assertEqual(methods["classify_single_view"], writer.CLASSIFY_METHOD)
    # The recorded warm-up asks serving_default with a predict request.
    logs = [log for log in serving_module.warmup_requests(module, "m")
            if log.WhichOneof("log_type") == "predict_log"
            and log.predict_log.request.model_spec.signature_name ==
            "serving_default"]
    self.assertLen(logs, len(serving_module.WARMUP_BATCH_SIZES))
    self.assertEqual(list(logs[0].predict_log.request.inputs),
                     ["image_bytes"])
    with self.assertRaisesRegex(ValueError,
                                "`serving_default` must be one of"):
      serving_module.for_run(self.net, "cifar", self.mean, self.labels,
                             serving_default="regress")

  def test_saved_model_cli_shows_classify_and_runs_predict_images(self):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    shown = subprocess.run([cli, "show", "--dir", self.path, "--all"],
                           capture_output=True, text=True, env=env,
                           check=True).stdout
    for key in ("serving_default", "classification"):
      block = shown.split(f"signature_def['{key}']")[1].split(
          "signature_def[")[0]
      self.assertIn("Method name is: tensorflow/serving/classify", block)
    npy = os.path.join(tempfile.mkdtemp(), "images.npy")
    np.save(npy, np.zeros([1, 32, 32, 3], np.uint8))
    ran = subprocess.run(
        [cli, "run", "--dir", self.path, "--tag_set", "serve",
         "--signature_def", "predict_images", "--inputs", f"images={npy}"],
        capture_output=True, text=True, env=env, check=False)
    self.assertEqual(ran.returncode, 0, ran.stderr[-2000:])
    self.assertIn("probabilities", ran.stdout)


class ImageNetExportTest(tf.test.TestCase):

  def test_multiscale_and_single_view_equal_the_evaluator(self):
    rng = np.random.RandomState(2)
    net = _settle(resnet.resnet18(num_classes=7), 224)
    mean = rng.uniform(80, 160, [224, 224, 3]).astype(np.float32)
    module = serving_module.for_run(net, "imagenet", mean,
                                    [str(i) for i in range(7)],
                                    scales=(224, 256), flip=True, top_k=3)
    loaded = tf.saved_model.load(writer.write(module, tempfile.mkdtemp()))
    images = _images(rng, [(240, 300, 3), (260, 230, 3)])
    source = sources.folder_source(_folder(images), family="imagenet")
    statistics = stats_lib.Statistics(mean, np.ones(3), np.eye(3), 1, "data")
    config = pipeline.InputConfig(1, test_scales=(224, 256), test_flip=True)
    multi = evaluation.Evaluator(net, "multiscale")
    expected = [multi.scores(views)[0] for views, _ in pipeline.eval_dataset(
        source, statistics, config, mode="multiscale")]
    out = loaded.signatures["predict"](image_bytes=tf.constant(images))
    self.assertAllClose(out["probabilities"], tf.stack(expected), atol=1e-5)
    center_views, _ = next(iter(pipeline.eval_dataset(
        source, statistics, config, mode="center", batch_size=2)))
    center = evaluation.Evaluator(net, "center").scores(center_views)
    single = loaded.signatures["predict_single_view"](
        image_bytes=tf.constant(images))
    self.assertAllClose(single["probabilities"], center, atol=1e-5)


class WriterTest(tf.test.TestCase):

  def test_versions_are_atomic_and_not_overwritten(self):
    net = resnet.cifar_resnet(8)
    module = serving_module.for_run(net, "cifar", np.zeros([32, 32, 3]),
                                    [str(i) for i in range(10)])
    base = tempfile.mkdtemp()
    self.assertEndsWith(writer.write(module, base), "/1")
    self.assertEndsWith(writer.write(module, base), "/2")
    self.assertEndsWith(writer.write(module, base, version=7), "/7")
    with self.assertRaisesRegex(FileExistsError, "exists"):
      writer.write(module, base, version=2)
    writer.write(module, base, version=2, overwrite=True)
    self.assertEqual(sorted(os.listdir(base)), ["1", "2", "7"])  # No temps.
    self.assertEqual(writer.prune(base, keep=2), [1])
    self.assertEqual(writer.versions(base), [2, 7])

  def test_a_version_taken_meanwhile_by_another_writer_is_kept(self):
    # Two processes exporting into one base path (the trainer's last export
    # and an evaluator's best): another writer's version appears while this
    # one writes.
    net = resnet.cifar_resnet(8)
    module = serving_module.for_run(net, "cifar", np.zeros([32, 32, 3]),
                                    [str(i) for i in range(10)])
    base = tempfile.mkdtemp()
    writer.write(module, base)
    taken = [os.path.join(base, "2")]
    real_warmup = writer.write_warmup

    def other_writer_meanwhile(module, version_dir, model_name):
      for path in taken:
        os.makedirs(os.path.join(path, "variables"), exist_ok=True)
      return real_warmup(module, version_dir, model_name)

    writer.write_warmup = other_writer_meanwhile
    self.addCleanup(setattr, writer, "write_warmup", real_warmup)
    # Its number was picked here: it takes the next one.
    self.assertEqual(writer.write(module, base), os.path.join(base, "3"))
    self.assertEqual(os.listdir(taken[0]), ["variables"])  # Untouched.
    # A number the caller chose is not changed behind its back.
    taken = [os.path.join(base, "5")]
    with self.assertRaisesRegex(FileExistsError, "5 appeared while"):
      writer.write(module, base, version=5)
    self.assertEqual(os.listdir(taken[0]), ["variables"])
    self.assertEqual(sorted(os.listdir(base)), ["1", "2", "3", "5"])

  def test_labels_must_match_the_outputs(self):
    with self.assertRaisesRegex(ValueError, "3 labels for a network with 10"):
      serving_module.for_run(resnet.cifar_resnet(8), "cifar",
                             np.zeros([32, 32, 3]), ["a", "b", "c"])


if __name__ == "__main__":
  tf.test.main()
