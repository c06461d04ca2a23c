"""Writing outputs: a killed stage's leftovers go on the next run, a user's folder only ever gains files."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from speakdigits.errors import PipelineError
from speakdigits.files import add_files, atomic_dir

from conftest import REPO

# A process that starts building data/features and then hangs, as a stage would mid-way.
HANGS_IN_ATOMIC_DIR = """
import sys, time
from speakdigits.files import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "half.npy").write_bytes(b"half-written")
    print(tmp, flush=True)
    time.sleep(600)
"""


def start_hanging_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGS_IN_ATOMIC_DIR, str(target)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    return proc, Path(proc.stdout.readline().strip())


def test_leftovers_of_a_killed_stage_disappear_on_rerun(tmp_path):
    target = tmp_path / "data" / "features"
    proc, leftover = start_hanging_writer(target)
    try:
        assert leftover.is_dir() and leftover.parent == target.parent
        with atomic_dir(target) as tmp:  # the process still runs: its folder is left alone
            (tmp / "clips.csv").write_text("ok\n")
        assert leftover.is_dir()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert leftover.is_dir()  # kill -9 leaves it behind ...

    with atomic_dir(target) as tmp:  # ... and the next run of the stage removes it
        (tmp / "clips.csv").write_text("again\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["features"]
    assert (target / "clips.csv").read_text() == "again\n"


def test_a_previous_output_is_kept_when_the_stage_fails(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "vae.keras").write_text("first")
    with pytest.raises(PipelineError), atomic_dir(target) as tmp:
        (tmp / "vae.keras").write_text("half")
        raise PipelineError("refused")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert (target / "vae.keras").read_text() == "first"


def test_add_files_takes_back_what_it_added_when_a_name_appears_meanwhile(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(PipelineError, match=r"b\.wav appeared while generating; nothing was written"):
        with add_files(folder, ["a.wav", "b.wav"]) as tmp:
            (tmp / "a.wav").write_bytes(b"new a")
            (tmp / "b.wav").write_bytes(b"new b")
            (folder / "b.wav").write_bytes(b"the user's b")  # someone else writes it meanwhile
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"keep.txt": b"mine", "b.wav": b"the user's b"}


def test_add_files_removes_only_a_folder_it_created_and_left_empty(tmp_path):
    new = tmp_path / "new" / "clips"
    with pytest.raises(PipelineError), add_files(new, ["a.wav"]) as tmp:
        raise PipelineError("failed mid-way")
    assert not new.exists() and (tmp_path / "new").is_dir()  # the parent was made by mkdir -p, and is empty but kept

    with add_files(new, ["a.wav"]) as tmp:
        (tmp / "a.wav").write_bytes(b"a")
    assert [p.name for p in new.iterdir()] == ["a.wav"]


@pytest.mark.parametrize("name", [".speakdigits.backup.tmp", ".speakdigits.999999999.abcdefgh.tmp"])
def test_folders_named_like_leftovers_but_not_made_here_are_kept(tmp_path, name):
    # A user's folder whose name matches the temporary folders' pattern (even with a dead pid in it)
    # was not made by this program: only a folder carrying the program's own mark is a leftover.
    folder = tmp_path / "out"
    (folder / name).mkdir(parents=True)
    (folder / name / "notes.txt").write_text("mine")
    with add_files(folder, ["a.wav"]) as tmp:
        (tmp / "a.wav").write_bytes(b"a")
    assert (folder / name / "notes.txt").read_text() == "mine"

    lookalike = tmp_path / "data" / name.replace("speakdigits", "features")
    lookalike.mkdir(parents=True)
    (lookalike / "notes.txt").write_text("mine")
    with atomic_dir(tmp_path / "data" / "features") as tmp:
        (tmp / "clips.csv").write_text("ok\n")
    assert (lookalike / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "data" / "features").iterdir()) == ["clips.csv"]


def test_the_library_writes_json_through_one_helper():
    # One format for every JSON output (indented, keys sorted, written whole): no file with its own options.
    inlined = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "speakdigits").rglob("*.py"))
        if path.name not in ("files.py", "runtime.py")  # runtime.py: Keras's own metadata.json
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "json.dump" in line
    ]
    assert inlined == []
