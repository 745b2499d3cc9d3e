"""TensorFlow's start-up and converter chatter kept off the user's terminal.

TensorFlow's C++ side writes straight to file descriptor 2 before its log level applies (absl's
"All log messages before absl::InitializeLog()", oneDNN's notice), and the converter prints the
SavedModel it writes on the way. None of it is something a user can act on. `filtered_output`
captures both descriptors around such a step and passes on every line that is not known chatter,
so real errors and warnings still reach the user.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own info and warning lines

CHATTER = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "Saved artifact at '",
    "The following endpoints are available",
    "* Endpoint 'serve'",
    "args_0 (POSITIONAL_ONLY)",
    "Output Type:",
    "TensorSpec(shape=",
    "Captures:",
    "TensorSpec(shape=(), dtype=tf.resource",
    "Statistics for quantized inputs were expected",
    "Ignored output_format.",
    "Ignored drop_control_dependency.",
    "Using new converter: If you encounter a problem",
    "fully_quantize: 0, inference_type: 6",
    "  warnings.warn(",  # the second line of the filtered converter warning above
)


def not_chatter(line: str) -> bool:
    return bool(line.strip()) and not any(marker in line for marker in CHATTER)


@contextlib.contextmanager
def filtered_output(keep=not_chatter):
    """Run a block with fds 1 and 2 captured; afterwards write back the lines `keep` accepts (by default
    those that are not chatter; `keep=lambda line: False` silences a block that fails on purpose)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    captured = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    try:
        for fd, file in captured.items():
            os.dup2(file.fileno(), fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            captured[fd].seek(0)
            kept = [line for line in captured[fd].read().decode(errors="replace").splitlines(keepends=True)
                    if keep(line)]
            captured[fd].close()
            (sys.stdout if fd == 1 else sys.stderr).write("".join(kept))
        sys.stdout.flush()


def import_tensorflow():
    """`tensorflow`, imported with its start-up chatter filtered (a no-op once imported)."""
    if "tensorflow" not in sys.modules:
        with filtered_output():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]
