"""TF_CONFIG as Kubeflow's TFJob writes it."""

import json

from absl.testing import absltest
from absl.testing import parameterized

from tf_resnet.training import cluster

# What the training-operator writes for a TFJob "r50" in namespace "ml" with
# one Chief, two Workers and one Evaluator (genTFConfigJSONStr: the replica
# type lowercased, DNS names <job>-<type>-<i>.<ns>.svc, "environment": "cloud").
_CLUSTER = {
    "chief": ["r50-chief-0.ml.svc:2222"],
    "worker": ["r50-worker-0.ml.svc:2222", "r50-worker-1.ml.svc:2222"],
    "evaluator": ["r50-evaluator-0.ml.svc:2222"],
}


def _tf_config(task_type: str, index: int, cluster=None, **extra) -> str:
  return json.dumps({"cluster": _CLUSTER if cluster is None else cluster,
                     "task": {"type": task_type, "index": index},
                     "environment": "cloud", **extra})


class ClusterTest(parameterized.TestCase):

  def test_the_operators_chief(self):
    task = cluster.parse(_tf_config("chief", 0))
    self.assertEqual(task.type, "chief")
    self.assertTrue(task.is_chief)
    self.assertFalse(task.is_evaluator)
    self.assertEqual(task.num_training_workers, 3)
    self.assertTrue(task.has_evaluator)
    self.assertEqual(task.environment, "cloud")
    self.assertEqual(task.address, "r50-chief-0.ml.svc:2222")

  def test_a_training_task_names_the_others_it_waits_for(self):
    self.assertEqual(
        cluster.parse(_tf_config("worker", 1)).waiting_line(),
        "worker 1 of 3 training tasks, at r50-worker-1.ml.svc:2222: waiting "
        "for chief 0 at r50-chief-0.ml.svc:2222, worker 0 at "
        "r50-worker-0.ml.svc:2222 to start (TensorFlow waits without a time "
        "limit, and until they have, only SIGKILL stops this process)")

  def test_worker_zero_is_not_chief_beside_a_chief(self):
    self.assertFalse(cluster.parse(_tf_config("worker", 0)).is_chief)

  def test_worker_zero_is_chief_without_one(self):
    workers = {"worker": _CLUSTER["worker"]}
    task = cluster.parse(_tf_config("worker", 0, workers))
    self.assertTrue(task.is_chief)
    self.assertFalse(task.has_evaluator)
    self.assertFalse(cluster.parse(_tf_config("worker", 1, workers)).is_chief)

  def test_the_evaluator(self):
    task = cluster.parse(_tf_config("evaluator", 0))
    self.assertTrue(task.is_evaluator)
    self.assertFalse(task.is_chief)

  def test_unset_or_empty_is_none(self):
    self.assertIsNone(cluster.from_environment({}))
    self.assertIsNone(cluster.from_environment({"TF_CONFIG": "  "}))
    self.assertEqual(
        cluster.from_environment({"TF_CONFIG": _tf_config("worker", 1)}).index,
        1)

  def test_ps_is_refused_with_the_reason(self):
    with_ps = dict(_CLUSTER, ps=["r50-ps-0.ml.svc:2222"])
    for text in (_tf_config("ps", 0, with_ps), _tf_config("worker", 0, with_ps)):
      with self.assertRaisesRegex(
          cluster.ClusterError,
          "ParameterServerStrategy is not supported"):
        cluster.parse(text)

  @parameterized.named_parameters(
      ("not_json", "{cluster", "is not JSON"),
      ("no_cluster", json.dumps({"task": {"type": "worker"}}), "no `cluster`"),
      ("no_task", json.dumps({"cluster": _CLUSTER}), "no `task`"),
      ("index_out_of_range", _tf_config("worker", 2),
       "task is worker 2, but the cluster lists 2 worker"),
      ("master", _tf_config("master", 0, dict(_CLUSTER, master=["m:1"])),
       "use a `Chief` replica"),
      ("unknown_type", _tf_config("trainer", 0), "must be one of"),
      ("two_evaluators",
       _tf_config("worker", 0, dict(_CLUSTER, evaluator=["a:1", "b:1"])),
       "2 evaluators; at most one"),
      ("only_an_evaluator",
       _tf_config("evaluator", 0, {"evaluator": ["e:1"]}),
       "no `chief` or `worker` task"),
      ("sparse", json.dumps({"sparseCluster": {}, "task": {"type": "worker"}}),
       "enableDynamicWorker"),
  )
  def test_bad_tf_config_names_the_problem(self, text, message):
    with self.assertRaisesRegex(cluster.ClusterError, message):
      cluster.parse(text)


if __name__ == "__main__":
  absltest.main()
