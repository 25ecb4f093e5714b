"""Runs of a benchmark and its peer in child processes, and their medians.

Flag-free, for `versus_torch.py`: each run is its own process, whose last
JSON line is its record and whose peak resident memory comes from the
kernel's accounting of that child (`os.wait4`), not from the child itself.
"""

import dataclasses
import json
import os
import statistics
import subprocess
from typing import Sequence


@dataclasses.dataclass
class Round:
  """One pair of runs."""
  ours: dict  # train_throughput.py's JSON record.
  peer: dict  # The peer's JSON line.
  peer_rss_mib: float

  @property
  def speed_ratio(self) -> float:
    return self.ours["images_per_sec"] / self.peer["images_per_sec"]

  @property
  def memory_ratio(self) -> float:
    return self.ours["peak_rss_mib"] / self.peer_rss_mib


def last_json_line(text: str, what: str) -> dict:
  """The last line of `text` that is a JSON object (a benchmark's record)."""
  for line in reversed(text.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"{what} printed no JSON record; its output ended:\n"
                     + "\n".join(text.splitlines()[-15:]))


def run_json(command: Sequence[str], what: str) -> tuple[dict, float]:
  """Runs `command`, returns its JSON record and its peak RSS in MiB.

  Linux carries a process's memory high-water mark across fork and exec, so
  the child's figure is at least this process's size when it started the
  child: call it from a small process (`versus_torch.py` does not import
  TensorFlow).
  """
  process = subprocess.Popen(command, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  with process.stdout:
    output = process.stdout.read()
  _, status, usage = os.wait4(process.pid, 0)
  process.returncode = os.waitstatus_to_exitcode(status)
  if process.returncode:
    raise RuntimeError(f"{what} failed (exit {process.returncode}):\n"
                       + "\n".join(output.splitlines()[-15:]))
  return last_json_line(output, what), usage.ru_maxrss / 1024


def summarize(rounds: Sequence[Round]) -> dict:
  """The medians over rounds, and each round's figures."""
  last = rounds[-1].ours
  return {
      "network": last["network"], "batch_size": last["batch_size"],
      "precision": last["precision"], "cpu": last["cpu"],
      "cores": last["cores"], "tensorflow": last["tensorflow"],
      "peer": rounds[-1].peer["framework"],
      "ours_images_per_sec": statistics.median(
          r.ours["images_per_sec"] for r in rounds),
      "peer_images_per_sec": statistics.median(
          r.peer["images_per_sec"] for r in rounds),
      "ours_over_peer": round(statistics.median(
          r.speed_ratio for r in rounds), 3),
      "peak_fraction": statistics.median(r.ours["peak_fraction"]
                                         for r in rounds),
      "peak_conv_gflops_per_sec": statistics.median(
          r.ours["peak_conv_gflops_per_sec"] for r in rounds),
      "ours_peak_rss_mib": statistics.median(r.ours["peak_rss_mib"]
                                             for r in rounds),
      "ours_rss_after_import_mib": statistics.median(
          r.ours["peak_rss_mib_at_start"] for r in rounds),
      "peer_peak_rss_mib": round(statistics.median(
          r.peer_rss_mib for r in rounds)),
      "rss_ratio": round(statistics.median(r.memory_ratio for r in rounds),
                         2),
      "max_others_cores": max(r.ours["others_cores"] or 0 for r in rounds),
      "rounds": [{"ours": r.ours["images_per_sec"],
                  "peer": r.peer["images_per_sec"],
                  "ratio": round(r.speed_ratio, 3)} for r in rounds],
  }
