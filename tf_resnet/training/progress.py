"""Progress a person reads: a line per interval (step, loss, error, rate, ETA) and messages."""

import os
import sys
from typing import TextIO


class Progress:
  """Progress lines on a stream: a bar redrawn in place on a terminal."""

  def __init__(self, total: int, stream: TextIO = sys.stdout,
               enabled: bool = True):
    """Constructs it.

    Args:
      total: the step training ends at.
      stream: where the lines go.
      enabled: False for workers other than the chief (they stay quiet).
    """
    self.total = total
    self._own_stream = stream
    self.stream = stream if enabled else open(os.devnull, "w")
    self.tty = enabled and stream.isatty()

  def show(self, step: int, loss: float, error: float, lr: float,
           rate: float, eta_secs: float) -> None:
    minutes, seconds = divmod(int(max(eta_secs, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    eta = f"{hours}:{minutes:02d}:{seconds:02d}"
    text = (f"step {step}/{self.total} loss {loss:.4f} train_error "
            f"{error:.4f} lr {lr:.4g} {rate:.1f} img/s ETA {eta}")
    if self.tty:
      width = 20
      done = int(width * step / self.total)
      bar = "#" * done + "." * (width - done)
      end = "\n" if step >= self.total else ""
      self.stream.write(f"\r[{bar}] {text}\x1b[K{end}")
    else:
      self.stream.write(text + "\n")
    self.stream.flush()

  def message(self, text: str, every_worker: bool = False) -> None:
    """Writes a line; `every_worker`: also where progress is disabled (a
    line each worker's own log needs, e.g. why it stopped)."""
    stream = self._own_stream if every_worker else self.stream
    if self.tty:
      stream.write("\n")
    stream.write(text + "\n")
    stream.flush()
