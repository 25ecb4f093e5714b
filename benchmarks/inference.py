r"""The exported SavedModel's speed against the bare network on the same images, in one run.

For ImageNet ResNet-50 and CIFAR ResNet-20 it measures images/s of
* the export's single-view signature (`predict_single_view`: JPEG bytes in,
  decode, crop, mean, network, softmax) against the network called directly
  (a tf.function of model + softmax) on the already preprocessed views;
* the export's multi-scale signature (`predict`) against the network called
  directly on the same multi-scale views of each image.
The overhead is what the export adds: (bare rate / export rate) - 1.

It also exports the same network with `--precision=bfloat16` (the network in
bfloat16, outputs float32) and times its single-view signature against the
float32 export's on the same JPEGs: the speed-up, and how far the two
exports' probabilities and top-1 classes agree (randomly initialised nets,
their batch-norm statistics set from the images, on random images: this
checks agreement, not accuracy). It pays only on
CPUs whose oneDNN takes bfloat16 (AVX-512 or AMX; `tf_resnet/hardware.py`).

  python benchmarks/inference.py [--format=json]
"""

import json
import os
import tempfile
import time

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from tf_resnet.data import transforms
from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import resnet

_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")


def _rate(fn, images: int, repeats: int) -> float:
  fn()  # Tracing and warm-up.
  began = time.perf_counter()
  for _ in range(repeats):
    fn()
  return images * repeats / (time.perf_counter() - began)


def _bfloat16_export(net, family, mean, encoded, views, repeats) -> dict:
  """The single-view signature of a bfloat16 export beside the float32 one.

  The network's moving statistics are first set from these images (twenty
  training-mode passes), as training would leave them: a fresh network's
  unit statistics on raw pixels saturate the softmax, and agreement between
  one-hot outputs says little.
  """
  for _ in range(20):
    net(views, is_training=True)
  labels = [str(i) for i in range(net.num_classes)]
  exports = {
      precision: tf.saved_model.load(writer.write(
          serving_module.for_run(net, family, mean, labels,
                                 precision=precision), tempfile.mkdtemp()))
      for precision in ("float32", "bfloat16")}
  single = {p: e.signatures["predict_single_view"] for p, e in exports.items()}
  probabilities = {p: fn(image_bytes=encoded)["probabilities"].numpy()
                   for p, fn in single.items()}
  rate = _rate(
      lambda: single["bfloat16"](image_bytes=encoded)["probabilities"].numpy(),
      len(encoded), repeats)
  return {
      "export_single_view_bfloat16": rate,
      "bfloat16_max_abs_probability_difference": float(np.abs(
          probabilities["bfloat16"] - probabilities["float32"]).max()),
      "bfloat16_top1_agreement": float(np.mean(
          probabilities["bfloat16"].argmax(-1)
          == probabilities["float32"].argmax(-1))),
  }


def _measure(name, net, family, size, shape, batch, multiscale_images,
             repeats):
  rng = np.random.RandomState(0)
  mean = np.full([size, size, 3], 110.0, np.float32)
  module = serving_module.for_run(net, family, mean,
                                  [str(i) for i in range(net.num_classes)])
  loaded = tf.saved_model.load(writer.write(module, tempfile.mkdtemp()))
  pixels = rng.randint(0, 256, [batch, *shape, 3]).astype(np.uint8)
  encoded = tf.constant([tf.io.encode_jpeg(p, quality=90).numpy()
                         for p in pixels])
  bare = tf.function(lambda x: tf.nn.softmax(net(x, is_training=False)))
  views = tf.stack([module.single_view(x, True) for x in encoded])
  single = loaded.signatures["predict_single_view"]
  rows = {
      "bare_single_view": _rate(lambda: bare(views).numpy(), batch, repeats),
      "export_single_view": _rate(
          lambda: single(image_bytes=encoded)["probabilities"].numpy(),
          batch, repeats),
  }
  rows.update(_bfloat16_export(net, family, mean, encoded, views, repeats))
  few = encoded[:multiscale_images]
  scaled = [transforms.multiscale_views(x, tf.constant(mean), encoded=True,
                                        scales=module.scales)
            for x in few] if family == "imagenet" else [[v[None]]
                                                        for v in views[:multiscale_images]]
  bare_any = tf.function(
      lambda x: tf.nn.softmax(net(x, is_training=False)),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  multi = loaded.signatures["predict"]
  rows["bare_multiscale"] = _rate(
      lambda: [[bare_any(v).numpy() for v in image] for image in scaled],
      multiscale_images, repeats)
  rows["export_multiscale"] = _rate(
      lambda: multi(image_bytes=few)["probabilities"].numpy(),
      multiscale_images, repeats)
  return {
      "network": name, "single_view_batch": batch,
      "multiscale_images": multiscale_images,
      "scales": list(module.scales),
      **{k: round(v, 4) for k, v in rows.items()},
      "bfloat16_over_float32_export": round(
          rows["export_single_view_bfloat16"] / rows["export_single_view"],
          2),
      "single_view_overhead": round(
          rows["bare_single_view"] / rows["export_single_view"] - 1, 3),
      "multiscale_overhead": round(
          rows["bare_multiscale"] / rows["export_multiscale"] - 1, 3),
  }


def main(argv):
  del argv
  repeats = _REPEATS.value
  results = [
      _measure("ResNet-50 (ImageNet)", resnet.resnet50(), "imagenet", 224,
               (375, 500), 8, 2, repeats),
      _measure("ResNet-20 (CIFAR-10)", resnet.resnet20(), "cifar", 32,
               (32, 32), 128, 32, repeats),
  ]
  for r in results:
    if _FORMAT.value == "json":
      print(json.dumps(r))
      continue
    print(f"{r['network']}: single view (batch {r['single_view_batch']}) "
          f"bare {r['bare_single_view']} img/s, export "
          f"{r['export_single_view']} img/s, overhead "
          f"{r['single_view_overhead']:.1%}; multi-scale {r['scales']} "
          f"bare {r['bare_multiscale']} img/s, export "
          f"{r['export_multiscale']} img/s, overhead "
          f"{r['multiscale_overhead']:.1%}; bfloat16 export "
          f"{r['export_single_view_bfloat16']:.2f} img/s = "
          f"{r['bfloat16_over_float32_export']}x float32's (top-1 agreement "
          f"{r['bfloat16_top1_agreement']:.1%}, max |p diff| "
          f"{r['bfloat16_max_abs_probability_difference']:.3f})")


if __name__ == "__main__":
  app.run(main)
