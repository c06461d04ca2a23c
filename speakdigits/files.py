"""Writing outputs so that a failed or interrupted stage leaves nothing half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from speakdigits.errors import PipelineError

#: A file in each temporary folder this program makes: its proof of authorship. A folder without
#: it is never removed, however its name looks (a user may name a folder ``.speakdigits.backup.tmp``).
MARK = ".made-by-speakdigits"


def _temporary_dir(parent: Path, name: str) -> Path:
    """A fresh private folder ``.{name}.{pid}.XXXX.tmp`` in ``parent``, holding :data:`MARK`.

    Folders of the same pattern left by processes that no longer run (a
    ``kill -9``, a power cut) are removed first, if they hold the mark; the pid
    in the name tells them from those of a run still going.
    """
    for stale in parent.glob(f".{name}.*.tmp"):
        pid = stale.name[len(name) + 2 :].split(".", 1)[0]
        made_here = stale.is_dir() and not stale.is_symlink() and (stale / MARK).is_file()
        if made_here and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=parent))
    (tmp / MARK).write_text("a temporary folder of speakdigits; removed when its process ends\n")
    return tmp


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a stage's output directory elsewhere and move it onto ``target`` only on success.

    For the pipeline's own outputs (the paths in dvc.yaml): a previous
    ``target`` is replaced. A user-given folder goes through :func:`add_files`,
    which never replaces anything.

    Yields a fresh temporary directory beside ``target`` (same file system, so
    the final move is a rename). If the body raises, or the process is
    interrupted, the temporary directory is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_dir(target.parent, target.name)
    try:
        yield tmp
        (tmp / MARK).unlink()
        tmp.chmod(0o755)  # mkdtemp makes it private; outputs are ordinary folders
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_user_folder(folder: str | Path, names: Iterable[str], option: str = "--out") -> Path:
    """Refuse a user-given output folder that is not safe to add ``names`` to.

    Refused: the file system root, the home directory, a repository's root
    (a folder holding ``.git`` or ``.dvc``) or anything inside ``.git``/``.dvc``,
    a path that is a file, and a folder that already holds one of ``names``.

    Raises
    ------
    PipelineError
        Naming the folder or the first clashing file; nothing has been written.
    """
    folder = Path(folder)
    resolved = folder.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve():
        raise PipelineError(f"{option} {folder}: refusing to write into {resolved}; give a new folder for the clips")
    if (resolved / ".git").exists() or (resolved / ".dvc").exists():
        raise PipelineError(f"{option} {folder}: is a repository's root; give a new folder for the clips")
    if ".git" in resolved.parts or ".dvc" in resolved.parts:
        raise PipelineError(f"{option} {folder}: is inside .git or .dvc; give a new folder for the clips")
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"{option} {folder}: is a file; expected a folder (new, or without these clips' names)")
    for name in names:
        if os.path.lexists(folder / name):
            raise PipelineError(
                f"{option} {folder}: already holds {name}; give a new folder (nothing is ever overwritten there)"
            )
    return folder


@contextlib.contextmanager
def add_files(folder: str | Path, names: Iterable[str], option: str = "--out") -> Iterator[Path]:
    """Add new files to a user-given folder, never replacing or removing anything there.

    :func:`check_user_folder` refuses the folder before any work. The body
    writes exactly ``names`` into the yielded temporary directory; on success
    each is added with exclusive creation, so a file that appeared meanwhile
    is not overwritten either (the files already added are taken back, and
    the error names the clash). On failure the folder is as it was; a folder
    this call created is removed again if it is still empty.
    """
    names = list(names)
    folder = check_user_folder(folder, names, option)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_dir(folder, "speakdigits")
    added: list[Path] = []
    try:
        yield tmp
        written = sorted(p.name for p in tmp.iterdir() if p.name != MARK)
        if written != sorted(names):
            raise RuntimeError(f"add_files: wrote {written}, announced {sorted(names)}")
        for name in names:
            try:
                with open(folder / name, "xb") as out, open(tmp / name, "rb") as src:
                    added.append(folder / name)
                    shutil.copyfileobj(src, out)
            except FileExistsError:
                raise PipelineError(
                    f"{option} {folder}: {name} appeared while generating; nothing was written"
                ) from None
        added.clear()
    finally:
        for path in added:
            path.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
