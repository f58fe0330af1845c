"""Lines that native libraries write straight to the process's stderr (file descriptor 2),
where Python's logging cannot filter them: TensorFlow's start-up lines, LiteRT's line when
it first creates its XNNPACK delegate, and the TFLite quantiser's line for every integer
file.

Importing TensorFlow 2.21 prints seven lines on a CPU machine whatever
``TF_CPP_MIN_LOG_LEVEL`` says (tensorflow#100442): absl's "All log messages before
absl::InitializeLog()" warning, "oneDNN custom operations are on" and "Could not find cuda
drivers", each twice (two of TensorFlow's libraries print them), and "failed call to
cuInit" at the first device lookup. The CLIs import TensorFlow through
``import_tensorflow_quietly``, which drops exactly those lines; anything else TensorFlow
writes meanwhile is passed through after the import. A user who sets
``TF_CPP_MIN_LOG_LEVEL`` to 0 or 1 sees them all.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable

TF_STARTUP_LINES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|\] oneDNN custom operations are on\."
    r"|\] Could not find cuda drivers on your machine, GPU will not be used\."
    r"|\] failed call to cuInit: "
)


# LiteRT's INFO line at a process's first XNNPACK delegate, after a predict's results
LITERT_LINES = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$")


@contextlib.contextmanager
def dropping(drop: Callable[[str], bool]):
    """Lines written to stderr inside the block, by Python or native code, for which
    ``drop(line)`` is true are dropped; the others are written to stderr after it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            rest = "".join(line for line in lines if not drop(line))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


def _has_stderr() -> bool:
    try:
        os.fstat(2)
    except OSError:
        return False
    return True


def _info_wanted() -> bool:
    """The user asked for TensorFlow's INFO lines (``TF_CPP_MIN_LOG_LEVEL`` 0 or 1), or
    there is no stderr to filter (a closed fd 2)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") in ("0", "1") or not _has_stderr()


def quiet_litert():
    """A block in which LiteRT's delegate INFO line (``LITERT_LINES``) is dropped."""
    return contextlib.nullcontext() if _info_wanted() else dropping(LITERT_LINES.search)


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and lets it look for devices, without its start-up lines (see
    the module docstring); does nothing when TensorFlow is already imported."""
    if "tensorflow" in sys.modules:
        return
    if _info_wanted():
        import tensorflow  # noqa: F401

        return
    with dropping(TF_STARTUP_LINES.search):
        import tensorflow as tf

        tf.config.list_physical_devices()
