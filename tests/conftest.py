"""Shared fixtures. Tests that need ../shared/data or a system tool skip with what to install,
except in strict mode (KWS_STRICT=1, set by .ci/run), where anything missing fails."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools.c_build import ToolMissing, find_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
STRICT = os.environ.get("KWS_STRICT") == "1"


def interruptible() -> None:
    """A Popen preexec_fn: the child takes SIGINT as Ctrl-C even when the tests run in the background
    (a non-interactive shell starts `cmd &` with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def missing(what: str) -> None:
    """Fail in strict mode, else skip, naming what is missing and how to get it."""
    if STRICT:
        pytest.fail(f"strict mode (KWS_STRICT=1): {what}")
    pytest.skip(what)


def require_tool(name: str, debian_package: str) -> str:
    try:
        return find_tool(name, debian_package)
    except ToolMissing as error:
        missing(str(error))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ.get("KWS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (path / "speech_commands_v0.02_mini").is_dir():
        missing(f"real audio not found at {path}: set KWS_SHARED_DATA to the shared data folder")
    return path


@pytest.fixture(scope="session")
def mini_set(shared_data) -> Path:
    return shared_data / "speech_commands_v0.02_mini"


def run_module(module: str, *args, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run `python -m module args` as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def kws12_run(mini_set, tmp_path_factory):
    """A 2-epoch kws12 run on a slice of the mini set: (its root folder, report, stdout); RUN is root/run."""
    import json

    root = tmp_path_factory.mktemp("pipeline")
    result = run_module(
        "training.train", "--data-dir", mini_set, "--preset", "kws12", "--arch", "dscnn", "--epochs", "2",
        "--limit-per-label", "12", "--out", root / "run", "--firmware-dir", root / "firmware",
        "--cache-dir", root / "cache", "--test-set", mini_set.parent / "speech_commands_test_set_v0.02_mini",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, json.loads((root / "run" / "report.json").read_text()), result.stdout
