"""The input pipeline benchmark's record: the keys it promises, and figures that agree."""

import json
import os
import subprocess
import sys

from absl.testing import absltest

_BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "input_pipeline.py")


class InputPipelineBenchmarkTest(absltest.TestCase):

  def test_json_record(self):
    run = subprocess.run(
        # Its own generated 500x375 JPEGs, a few.
        [sys.executable, _BINARY, "--num_jpegs=4", "--batch_size=2",
         "--format=json",
         "--seconds=0.2", "--rounds=1", "--steps=0",
         "--gpu_images_per_sec=1000"],
        capture_output=True, text=True, timeout=600, check=False)
    self.assertEqual(run.returncode, 0, run.stderr[-3000:])
    lines = [l for l in run.stdout.splitlines() if l.startswith("{")]
    self.assertLen(lines, 1)  # One JSON object, nothing else on stdout.
    record = json.loads(lines[0])
    decode = record["decode_only_images_per_sec_per_core"]
    self.assertGreater(decode, 0)
    for name in ("window_decode_only", "imagenet_train",
                 "imagenet_train_device_resample_host", "imagenet_center",
                 "imagenet_10crop", "imagenet_multiscale"):
      rate = record[f"{name}_images_per_sec_per_core"]
      self.assertGreater(rate, 0)
      # The record rounds rates to 0.1, ratios to 0.001 and cores to 0.01;
      # recomputing from rounded rates carries their relative error
      # (up to 0.05 / rate), which is large on a slow, loaded machine.
      rate_err = 0.05 / rate
      ratio = rate / decode
      self.assertAlmostEqual(record[f"{name}_over_decode_only"], ratio,
                             delta=0.0005 + ratio * (rate_err + 0.05 / decode)
                             + 1e-9)
      cores = 1000 / rate
      self.assertAlmostEqual(record[f"{name}_cores_per_gpu"], cores,
                             delta=0.005 + cores * rate_err * 1.01 + 1e-9)
    window = record["window_decode_only_images_per_sec_per_core"]
    for name in ("imagenet_train", "imagenet_train_device_resample_host"):
      train = record[f"{name}_images_per_sec_per_core"]
      ratio = train / window
      self.assertAlmostEqual(
          record[f"{name}_over_window_decode_only"], ratio,
          delta=0.0005 + ratio * (0.05 / train + 0.05 / window) + 1e-9)
    # Resampling on the accelerator: the host part, the device part timed
    # on this CPU, and both on one CPU (the work moved, not removed).
    host = record["imagenet_train_device_resample_host_images_per_sec_per_core"]
    train = record["imagenet_train_images_per_sec_per_core"]
    ratio = host / train
    self.assertAlmostEqual(
        record["imagenet_train_device_resample_host_over_imagenet_train"],
        ratio, delta=0.0005 + ratio * (0.05 / host + 0.05 / train) + 1e-9)
    device = record["device_resample_part_on_cpu_images_per_sec_per_core"]
    self.assertGreater(device, 0)
    self.assertAlmostEqual(record["device_resample_part_on_cpu_us_per_image"],
                           1e6 / device, delta=0.05 + 1e6 / device * (
                               0.05 / device) * 1.01 + 1e-9)
    both = 1 / (1 / host + 1 / device)
    self.assertAlmostEqual(
        record["imagenet_train_device_resample_both_on_cpu_images_per_sec_"
               "per_core"], both,
        delta=0.05 + both * (0.05 / host + 0.05 / device) + 1e-9)
    self.assertNotIn("device_resample_part_on_cpu_cores_per_gpu", record)
    self.assertEqual(record["cores"], os.cpu_count())
    self.assertNotIn("imagenet_resnet_step_images_per_sec", record)


if __name__ == "__main__":
  absltest.main()
