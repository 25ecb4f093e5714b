"""Request deadlines, carried from the transport to the model run.

gRPC clients send a deadline and REST requests get `--rest_api_timeout_in_ms`
(TF Serving's RunOptions.timeout_in_ms). The transport opens a `scope` around
the handler; `check` (called just before the model runs) fails a request whose
deadline has passed with DEADLINE_EXCEEDED instead of running it, and
`remaining` tells what is left to whatever can wait with a timeout.
"""

import contextlib
import contextvars
import time
from typing import Iterator, Optional

import grpc

from tf_resnet.serving import errors

_DEADLINE: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar(
    "tf_resnet_serving_deadline", default=None)
# gRPC's time_remaining() for a call without a deadline is ~2**63 ns.
_NO_DEADLINE = 1e9


@contextlib.contextmanager
def scope(seconds: Optional[float]) -> Iterator[None]:
  """Runs the block with a deadline `seconds` from now (None: none).

  An enclosing deadline that comes sooner stays in force.

  Args:
    seconds: the time the request may still take.

  Yields:
    Nothing.
  """
  current = _DEADLINE.get()
  deadline = current
  if seconds is not None and seconds < _NO_DEADLINE:
    new = time.monotonic() + seconds
    deadline = new if current is None else min(current, new)
  token = _DEADLINE.set(deadline)
  try:
    yield
  finally:
    _DEADLINE.reset(token)


def remaining() -> Optional[float]:
  """Seconds left before the current request's deadline (None: no deadline)."""
  deadline = _DEADLINE.get()
  return None if deadline is None else deadline - time.monotonic()


def check() -> None:
  """Raises DEADLINE_EXCEEDED if the current request's deadline has passed.

  Raises:
    ServingError: DEADLINE_EXCEEDED.
  """
  left = remaining()
  if left is not None and left <= 0:
    raise errors.ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                              "Deadline Exceeded")
