"""Writing outputs so that a failed or interrupted stage leaves nothing half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from speakdigits.errors import PipelineError


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a directory elsewhere and move it onto ``target`` only on success.

    Yields a fresh temporary directory beside ``target`` (same file system, so
    the final move is a rename). If the body raises, or the process is
    interrupted, the temporary directory is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; outputs are ordinary folders
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_stage_json(path: str | Path, stage: str) -> Any:
    """Read a JSON file that the DVC stage ``stage`` writes.

    Raises
    ------
    PipelineError
        When it is missing (naming the stage to run) or not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run the {stage} stage first (dvc repro {stage})") from None
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err}); rerun the {stage} stage (dvc repro -f {stage})") from None
