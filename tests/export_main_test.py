"""The export binary as a user runs it: versions, labels, clear refusals."""

import json
import os
import tempfile

from absl.testing import absltest
from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-direct-tensorflow-import

from tf_resnet.testing import processes



class ExportMainTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.run_dir = tempfile.mkdtemp()
    trained = processes.run("tf_resnet.train", "--dataset=digits", "--depth=8",
                            "--batch_size=16", "--train_steps=4",
                            "--steps_per_loop=2", f"--model_dir={cls.run_dir}",
                            "--eval_examples=32")
    assert trained.returncode == 0, trained.stderr[-3000:]

  def test_exports_new_versions_with_the_runs_labels(self):
    base = tempfile.mkdtemp()
    for version, default in ((1, "classify"), (2, "predict")):
      result = processes.run("tf_resnet.export", f"--model_dir={self.run_dir}",
                             f"--export_dir={base}", "--top_k=3",
                             f"--serving_default={default}")
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
      self.assertIn(f"at step 4", result.stdout)
      self.assertTrue(result.stdout.strip().endswith(f"{base}/{version}"))
    self.assertEqual(sorted(os.listdir(base)), ["1", "2"])
    # --serving_default=predict: TF Serving's ResNet tutorial's interface.
    for version, inputs, method in ((1, ["inputs"], "classify"),
                                    (2, ["image_bytes"], "predict")):
      saved = saved_model_pb2.SavedModel()
      with open(os.path.join(base, str(version), "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
      default = saved.meta_graphs[0].signature_def["serving_default"]
      self.assertEqual(list(default.inputs), inputs)
      self.assertEqual(default.method_name, f"tensorflow/serving/{method}")
    again = processes.run("tf_resnet.export", f"--model_dir={self.run_dir}",
                          f"--export_dir={base}", "--version=2")
    self.assertNotEqual(again.returncode, 0)
    self.assertIn("exists; choose another --version or pass --overwrite",
                  again.stderr)

  def test_a_checkpoint_of_another_network_is_refused(self):
    run_dir = tempfile.mkdtemp()
    for name in os.listdir(self.run_dir):
      src = os.path.join(self.run_dir, name)
      if os.path.isfile(src):
        with open(src, "rb") as f, open(os.path.join(run_dir, name),
                                         "wb") as g:
          g.write(f.read())
    with open(os.path.join(run_dir, "config.json")) as f:
      config = json.load(f)
    config["model"]["depth"] = 14
    with open(os.path.join(run_dir, "config.json"), "w") as f:
      json.dump(config, f)
    result = processes.run("tf_resnet.export", f"--model_dir={run_dir}",
                           f"--export_dir={tempfile.mkdtemp()}")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("does not hold a ResNet-14 (A)", result.stderr)

  def test_not_a_training_run(self):
    result = processes.run("tf_resnet.export",
                           f"--model_dir={tempfile.mkdtemp()}",
                           f"--export_dir={tempfile.mkdtemp()}")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("config.json does not exist", result.stderr)


if __name__ == "__main__":
  absltest.main()
