"""What a binary does before TensorFlow loads: keep TensorFlow's C++ start-up chatter quiet.

On a machine without a GPU, TensorFlow 2.21 logs `E0000 ... failed call to
cuInit: ... CUDA error` at import, which a new user reads as a failure. A
binary calls `quiet_tensorflow_logs()` as its first statement, before
anything imports TensorFlow; `--verbosity`/`-v` on the command line, or a
TF_CPP_MIN_LOG_LEVEL the user set, keep TensorFlow's own logging. Python
errors are not affected: they still raise with their messages.

Nothing here imports TensorFlow.
"""

import os
import re
import sys
from typing import Optional, Sequence

# absl's verbosity flag and its short form, as absl parses them.
_VERBOSITY = re.compile(r"^(--verbosity(=.*)?|-v(=?-?\d+)?)$")


def quiet_tensorflow_logs(argv: Optional[Sequence[str]] = None) -> bool:
  """Sets TF_CPP_MIN_LOG_LEVEL=3 unless the user asked for TensorFlow's logs.

  Args:
    argv: the command line (default sys.argv).

  Returns:
    Whether the logs were silenced.
  """
  argv = sys.argv if argv is None else argv
  if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
    return False
  if any(_VERBOSITY.match(arg) for arg in argv[1:]):
    return False
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  return True
