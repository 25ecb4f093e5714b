"""Start-up as tensorflow_model_server's: ports open once the models serve.

ServerCore::Create waits for the newest version of every configured model
(retrying failed loads) before the server listens; a version that fails its
last retry fails the start with UNKNOWN "N servable(s) did not become
available".
"""

import os
import shutil
import socket
import tempfile
import threading

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import grpc_server
from tf_resnet.serving import manager
from tf_resnet.serving import model_config
from tf_resnet.testing import exports

State = get_model_status_pb2.ModelVersionStatus.State


def _broken_version(base: str, version: str) -> None:
  os.makedirs(os.path.join(base, version))
  with open(os.path.join(base, version, "saved_model.pb"), "wb") as f:
    f.write(b"not a SavedModel")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _listening(port: int) -> bool:
  with socket.socket() as s:
    return s.connect_ex(("127.0.0.1", port)) == 0


class InitialLoadTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.export = exports.tiny_export(seed=1)

  def _models(self, config, retries: int, interval: float = 0.0):
    models = manager.ModelManager(config, lifecycle=manager.LifecycleOptions(
        poll_seconds=0.05, max_num_load_retries=retries,
        load_retry_interval_seconds=interval))
    self.addCleanup(models.stop)
    models.start()
    return models

  def test_a_version_that_fails_its_last_retry_fails_the_start(self):
    good, bad = tempfile.mkdtemp(), tempfile.mkdtemp()
    shutil.copytree(self.export, os.path.join(good, "1"))
    _broken_version(bad, "3")
    config = model_server_config_pb2.ModelServerConfig()
    for name, base in (("good", good), ("bad", bad)):
      config.model_config_list.config.add(
          name=name, base_path=base, model_platform="tensorflow")
    models = self._models(config, retries=2)
    with self.assertRaises(manager.ServingError) as raised:
      models.wait_for_initial_models()
    self.assertEqual(raised.exception.code, grpc.StatusCode.UNKNOWN)
    # TF Serving's wording: only the model that failed, with its error.
    self.assertStartsWith(
        raised.exception.message,
        "1 servable(s) did not become available: {{{name: bad version: 3} "
        "due to error: UNKNOWN: Failed to load version 3 of model bad: ")
    self.assertTrue(raised.exception.message.endswith("}, }"))
    self.assertEqual(models.model("bad").status[3].state, State.END)
    self.assertEqual(models.model("good").status[1].state, State.AVAILABLE)

  def test_a_failed_load_is_retried_while_the_start_waits(self):
    base = tempfile.mkdtemp()
    incomplete = os.path.join(base, "1")  # Its variables are not there yet.
    os.makedirs(incomplete)
    shutil.copy(os.path.join(self.export, "saved_model.pb"), incomplete)
    models = self._models(model_config.single_model_config("m", base),
                          retries=100, interval=0.05)
    self.assertEqual(models.model("m").status[1].state, State.LOADING)
    # With the next progress log an hour away, only the retry's own
    # notice can end the wait.
    waiter = threading.Thread(target=models.wait_for_initial_models,
                              kwargs={"log_every_seconds": 3600})
    waiter.start()
    waiter.join(0.5)
    self.assertTrue(waiter.is_alive())  # Still retrying: still waiting.
    for name in os.listdir(self.export):  # The copy completes.
      source = os.path.join(self.export, name)
      if os.path.isdir(source):
        shutil.copytree(source, os.path.join(incomplete, name))
    waiter.join(60)
    self.assertFalse(waiter.is_alive())
    self.assertEqual(models.model("m").status[1].state, State.AVAILABLE)

  def test_the_server_listens_only_once_a_version_appears(self):
    base = tempfile.mkdtemp()  # No version yet: TF Serving waits and logs.
    port = _free_port()
    started, failures = [], []

    def start():
      try:
        started.append(grpc_server.Server(
            model_config.single_model_config("m", base), port=port,
            poll_seconds=0.05, health=False, wait_for_models=True))
      except Exception as e:  # pylint: disable=broad-except
        failures.append(e)

    with self.assertLogs("tf_resnet.serving", "WARNING") as logs:
      thread = threading.Thread(target=start)
      thread.start()
      thread.join(1.0)
      self.assertTrue(thread.is_alive())
      self.assertFalse(_listening(port))
      shutil.copytree(self.export, os.path.join(base, "7"))
      thread.join(60)
    self.assertEqual(failures, [])
    server = started[0]
    self.addCleanup(server.stop, 0)
    self.assertEqual(server.port, port)
    self.assertTrue(_listening(port))
    self.assertEqual(server.models.model("m").resolve().version, 7)
    self.assertTrue(any(f"No versions of servable m found under base path "
                        f"{base}" in line for line in logs.output),
                    logs.output)

  def test_stop_ends_the_wait(self):
    models = self._models(model_config.single_model_config(
        "m", tempfile.mkdtemp()), retries=0)
    threading.Timer(0.3, models.stop).start()
    with self.assertRaises(manager.ServingError) as raised:
      models.wait_for_initial_models(log_every_seconds=3600)
    self.assertEqual(raised.exception.code, grpc.StatusCode.CANCELLED)


if __name__ == "__main__":
  tf.test.main()
