"""End to end: a converted run directory is a run like any other; its export predicts what Keras predicts.

A Keras ResNet-50 file made here is converted; the run directory is read
back the way evaluate and export read a trained run; `tf_resnet.export`
exports it and the SavedModel's `predict_images` and `classification`
signatures are compared with Keras's `preprocess_input` + model on the same
decoded images. The convert binary runs once on a small torchvision file,
and once on a damaged one.
"""

import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from tf_resnet.pretrained import conversion
from tf_resnet.pretrained import labels
from tf_resnet.pretrained import readers
from tf_resnet.pretrained import testing
from tf_resnet.testing import images as test_images
from tf_resnet.testing import processes
from tf_resnet.training import run_dir
from tf_resnet.training import run_dir

_RTOL = 1e-4


def _keras_log_probabilities(model, images: np.ndarray) -> np.ndarray:
  import keras  # pylint: disable=g-import-not-at-top
  x = keras.applications.resnet.preprocess_input(images.astype(np.float32))
  return tf.nn.log_softmax(model(x, training=False)).numpy()


class KerasRunTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = tempfile.mkdtemp()
    cls.keras = testing.keras_resnet(50, seed=3)
    cls.path = testing.save_keras_legacy_h5(
        cls.keras, os.path.join(cls.dir, "resnet50.h5"))
    cls.model_dir = os.path.join(cls.dir, "run")
    cls.result = conversion.convert(conversion.ConvertConfig(
        source="keras", weights=cls.path, model_dir=cls.model_dir))

  def test_run_directory_reads_like_a_trained_run(self):
    run = run_dir.load(self.model_dir)
    self.assertEqual(run.model.display_name, "ResNet-50 (B)")
    self.assertEqual(run.model.max_pool_padding, "symmetric")
    self.assertEqual(run.data.dataset, "imagenet2012")
    self.assertEqual(run.labels, labels.imagenet_labels())
    self.assertAllClose(run.statistics.mean_image[100, 7],
                        [123.68, 116.779, 103.939])
    self.assertEqual(run.statistics.mean_image.shape, (224, 224, 3))
    network, step, path = run_dir.restore(run)
    self.assertEqual((step, os.path.basename(path)), (0, "ckpt-0"))
    for ours, converted in zip(network.variables,
                               self.result.network.variables):
      self.assertAllEqual(ours, converted)
    with open(os.path.join(self.model_dir, run_dir.CONFIG_FILE)) as f:
      self.assertEqual(json.load(f)["model"]["max_pool_padding"],
                       "symmetric")

  def test_refuses_a_used_model_dir(self):
    with self.assertRaisesRegex(readers.ConversionError,
                                f"--model_dir={self.model_dir} is not empty"):
      conversion.convert(conversion.ConvertConfig(
          source="keras", weights=self.path, model_dir=self.model_dir))

  def test_export_predicts_what_keras_predicts(self):
    export_dir = os.path.join(self.dir, "export")
    done = processes.run("tf_resnet.export", f"--model_dir={self.model_dir}",
                         f"--export_dir={export_dir}", "--scales=224")
    self.assertEqual(done.returncode, 0, done.stderr)
    served = tf.saved_model.load(os.path.join(export_dir, "1"))
    predict = served.signatures["predict_images"]
    # The whole image at shorter side 224: a square and a non-square one.
    for height, width in ((224, 224), (224, 288)):
      images = testing.random_images(height, width, seed=width)
      probabilities = predict(images=tf.constant(images))["probabilities"]
      ours = np.log(probabilities.numpy())
      theirs = _keras_log_probabilities(self.keras, images)
      error = np.abs(ours - theirs).max() / np.abs(theirs).max()
      self.assertLess(error, _RTOL)
    # Classify returns ImageNet's names (PNG: the same pixels as decoded).
    images = testing.random_images(224, 224, seed=5)
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[test_images.encode_png(image)]))})).SerializeToString()
                for image in images]
    classified = served.signatures["serving_default"](
        inputs=tf.constant(examples))
    theirs = _keras_log_probabilities(self.keras, images)
    names = labels.imagenet_labels()
    self.assertEqual([c[0].decode() for c in classified["classes"].numpy()],
                     [names[i] for i in theirs.argmax(axis=1)])
    self.assertAllClose(classified["scores"][:, 0],
                        np.exp(theirs.max(axis=1)), rtol=_RTOL)


class BinaryTest(tf.test.TestCase):

  def test_convert_binary(self):
    import torch  # pylint: disable=g-import-not-at-top
    from safetensors import torch as safetensors_torch  # pylint: disable=g-import-not-at-top
    directory = tempfile.mkdtemp()
    model = testing.torchvision_resnet(18, num_classes=3)
    path = os.path.join(directory, "resnet18.safetensors")
    safetensors_torch.save_file(model.state_dict(), path)
    labels_file = os.path.join(directory, "labels.txt")
    with open(labels_file, "w") as f:
      f.write("cat\ndog\nbird\n")
    model_dir = os.path.join(directory, "run")
    done = processes.run("tf_resnet.convert", "--source=torchvision",
                         f"--weights={path}", f"--model_dir={model_dir}",
                         f"--labels={labels_file}")
    self.assertEqual(done.returncode, 0, done.stderr)
    self.assertIn(f"Converted {path} into ResNet-18 (B): "
                  f"{model_dir}/ckpt-0", done.stdout)
    run = run_dir.load(model_dir)
    self.assertEqual(run.labels, ["cat", "dog", "bird"])
    self.assertTrue(run.model.stride_on_3x3 is False)  # Basic blocks.
    network, _, _ = run_dir.restore(run)
    images = testing.random_images(224, 224)
    ours = network(images.astype(np.float32) - run.statistics.mean_image,
                   is_training=False).numpy()
    with torch.no_grad():
      theirs = model(testing.torchvision_preprocess(images)).numpy()
    self.assertLess(np.abs(ours - theirs).max() / np.abs(theirs).max(), _RTOL)

    # A damaged file: one line naming it, exit status 1, nothing written.
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 3)
    other = os.path.join(directory, "other")
    done = processes.run("tf_resnet.convert", f"--weights={path}",
                         "--source=torchvision", f"--model_dir={other}")
    self.assertEqual(done.returncode, 1)
    self.assertRegex(done.stderr.strip().splitlines()[-1],
                     f"^error: cannot read {path} as safetensors \\(truncated "
                     "or damaged\\?\\): ")
    self.assertFalse(os.path.exists(other))


if __name__ == "__main__":
  tf.test.main()
