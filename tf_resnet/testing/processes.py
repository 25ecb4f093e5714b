"""The binaries as a user runs them: subprocesses, ports, clean stops."""

import os
import socket
import subprocess
import sys

from tf_resnet import startup

# Long enough for TensorFlow's import and a tiny run on a loaded 2-core
# machine; a hung binary still fails the test.
TIMEOUT_SECS = 300


def env(**extra: str) -> dict[str, str]:
  """The environment for a binary under test: TensorFlow's C++ logs quiet.

  Without the oneDNN setting the test process made for itself (conftest):
  each binary makes its own choice, as when a user starts it (the server
  keeps TensorFlow's, the training binaries turn oneDNN on).
  """
  return startup.user_environ(**{"TF_CPP_MIN_LOG_LEVEL": "3", **extra})


def command(module: str, *args: str) -> list[str]:
  """`python -m module args...` with the test's own interpreter."""
  return [sys.executable, "-m", module, *args]


def run(module: str, *args: str, timeout: float = TIMEOUT_SECS,
        **kwargs) -> subprocess.CompletedProcess:
  """Runs `python -m module args...` to the end; stdout and stderr as text."""
  kwargs.setdefault("env", env())
  return subprocess.run(command(module, *args), capture_output=True,
                        text=True, timeout=timeout, check=False, **kwargs)


def start(module: str, *args: str, **kwargs) -> subprocess.Popen:
  """Starts `python -m module args...`; stop it with `stop`."""
  kwargs.setdefault("env", env())
  kwargs.setdefault("stdout", subprocess.PIPE)
  kwargs.setdefault("stderr", subprocess.PIPE)
  kwargs.setdefault("text", True)
  return subprocess.Popen(command(module, *args), **kwargs)


def stop(proc: subprocess.Popen) -> None:
  """Kills a process that is still running and reaps it."""
  if proc.poll() is None:
    proc.kill()
  proc.wait()


def free_ports(count: int) -> list[int]:
  """Distinct ports on 127.0.0.1 that nothing listens on (held together)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def free_port() -> int:
  return free_ports(1)[0]
