"""The one way a run folder is written: everything goes into a scratch folder beside it, which becomes
the run folder only when the run is complete. An interrupted run leaves the previous run untouched
(and its scratch folder removed); a complete rerun replaces the whole folder, so no stale file of an
older run survives; an existing run is never replaced without --overwrite. A scratch folder left by a writer
that could not clean up (SIGKILL, a power cut) is removed by the next writer of the same folder."""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import zipfile
from pathlib import Path


class RunFolderError(ValueError):
    """A run folder that cannot be written, naming it and what to do."""


def check_free(run_dir: Path, overwrite: bool) -> None:
    """Before any work: refuse an existing, non-empty run folder unless `overwrite`; check it can be written."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"--out {run_dir} is a file, not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise RunFolderError(f"--out {run_dir} already holds a run: pass --overwrite to replace it once this run "
                             "completes, or choose another --out")
    require_writable(run_dir.parent, f"--out {run_dir}")


def require_writable(folder: Path, option: str) -> None:
    """`folder` exists (created if need be) and can be written; RunFolderError naming `option` otherwise."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunFolderError(f"{option}: cannot create {folder}: {error.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunFolderError(f"{option}: {folder} is not writable")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_abandoned(folder: Path, patterns: list[str]) -> None:
    """Scratch folders in `folder` matching `patterns` (globs whose names end in -PID) whose writing process is
    gone: removed, so that they do not pile up; one whose writer still runs is left to it."""
    for scratch in [path for pattern in patterns for path in Path(folder).glob(pattern)]:
        pid = scratch.name.rsplit("-", 1)[1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def writing(run_dir: Path, overwrite: bool):
    """Yields a scratch folder; on success it replaces `run_dir`, on any failure it is removed."""
    run_dir = Path(run_dir)
    check_free(run_dir, overwrite)
    name = glob.escape(run_dir.name)
    remove_abandoned(run_dir.parent, [f".{name}.partial-*", f".{name}.replaced-*"])  # left by a killed writer
    scratch = run_dir.parent / f".{run_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    old = run_dir.parent / f".{run_dir.name}.replaced-{os.getpid()}"
    if run_dir.exists():
        run_dir.rename(old)
    scratch.rename(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def check_base(run: Path, arch: str, input_shape: tuple) -> None:
    """RUN/model_float.keras is a model of `arch` taking `input_shape`, read from its config without
    TensorFlow; RunFolderError naming the folder otherwise (a run to start another from)."""
    try:
        with zipfile.ZipFile(Path(run) / "model_float.keras") as saved:
            config = json.loads(saved.read("config.json"))["config"]
        found = config["name"], tuple(config["layers"][0]["config"]["batch_shape"][1:])
    except (OSError, KeyError, IndexError, ValueError, zipfile.BadZipFile):
        raise RunFolderError(f"{run}: no readable model_float.keras there; give a training run's folder") from None
    if found != (arch, tuple(input_shape)):
        raise RunFolderError(f"{run}: its model is {found[0]} with input {found[1]}, this run's {arch} with input "
                             f"{tuple(input_shape)}: train both with the same --arch and features")
