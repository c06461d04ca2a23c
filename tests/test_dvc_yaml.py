"""dvc.yaml is what ``python -m stages.dvc_yaml`` writes, and what it writes is right.

The code dependencies of each stage come from its import closure (read with
``ast``, starting at ``stages/X.py``): a missing one means DVC would not rerun
the stage when that code changes, an extra one means needless reruns. Package
``__init__.py`` files are part of the closure only when they hold more than a
docstring. Imports guarded by ``if TYPE_CHECKING:`` never run and do not count.

dvc.yaml is checked against what the writer's own scan finds only to say that
it is up to date; whether that scan is right is checked against Python's own
import scanner (:mod:`modulefinder`, which reads the compiled bytecode, not the
syntax tree) and against expectations written here by hand.
"""

from __future__ import annotations

import io
import modulefinder
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages import dvc_yaml
from stages.dvc_yaml import local_closure

from conftest import REPO

DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def dep_paths(stage: dict) -> list[str]:
    return [next(iter(dep)) if isinstance(dep, dict) else dep for dep in stage.get("deps", [])]


def test_dvc_yaml_is_what_the_stage_modules_declare():
    assert (REPO / "dvc.yaml").read_text(encoding="utf-8") == dvc_yaml.render(), (
        "dvc.yaml is out of date: run `python -m stages.dvc_yaml` and commit it"
    )


def test_check_mode_fails_on_an_edited_dvc_yaml(tmp_path, monkeypatch, capsys):
    copy = tmp_path / "dvc.yaml"
    copy.write_text(dvc_yaml.render().replace("      - speakdigits/audio.py\n", "", 1), encoding="utf-8")
    monkeypatch.setattr(dvc_yaml, "DVC_YAML", copy)
    assert dvc_yaml.main(["--check"]) == 1
    assert "out of date; run: python -m stages.dvc_yaml" in capsys.readouterr().err
    assert dvc_yaml.main([]) == 0  # writes it
    assert dvc_yaml.main(["--check"]) == 0
    assert copy.read_text(encoding="utf-8") == dvc_yaml.render()


def test_the_check_runs_from_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "stages.dvc_yaml", "--check"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


# Every module in stages/ is a stage, except these.
NOT_STAGES = {"__init__", "common", "dvc_yaml"}
STAGE_MODULES = sorted(path.stem for path in (REPO / "stages").glob("*.py") if path.stem not in NOT_STAGES)


def test_every_stage_runs_its_own_module():
    assert sorted(DVC_YAML["stages"]) == STAGE_MODULES, "a stage module missing from dvc.yaml (stages.dvc_yaml.STAGES)"
    for name, stage in DVC_YAML["stages"].items():
        assert stage["cmd"] == f"python -m stages.{name}"


def outputs(stage: dict) -> set[str]:
    return {next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics") for o in stage.get(key, [])}


def test_stages_are_listed_in_the_order_they_run():
    """Each stage reads only what stages above it write (DVC orders by the deps; a reader orders by the file)."""
    made = set()
    every_output = set().union(*(outputs(stage) for stage in DVC_YAML["stages"].values()))
    for name, stage in DVC_YAML["stages"].items():
        read = set(dep_paths(stage)) & every_output
        assert read <= made, f"{name} reads {sorted(read - made)}, written by a stage below it"
        made |= outputs(stage)


# Package __init__.py files that hold only a docstring: importing a module below them runs nothing of
# theirs, so they are no stage's dependency. (Python imports every package's __init__.py; the scanner
# below finds them all.)
DOCSTRING_ONLY_INITS = {"stages/__init__.py"}


class LocalImports(modulefinder.ModuleFinder):
    """Python's own import scanner, kept to this repository: modules outside speakdigits/ and stages/ are
    not followed, and an ``if TYPE_CHECKING:`` block becomes ``if False:``, which the compiler drops."""

    def __init__(self) -> None:
        super().__init__(path=[str(REPO)])

    def find_module(self, name, path, parent=None):
        if path is None and name not in ("speakdigits", "stages"):  # a top-level module that is not ours
            raise ImportError(name)
        return super().find_module(name, path, parent)

    def load_module(self, fqname, fp, pathname, file_info):
        if pathname.endswith(".py"):
            source = fp.read()
            source = source.decode("utf-8") if isinstance(source, bytes) else source
            fp = io.StringIO(source.replace("if TYPE_CHECKING:", "if False:"))
        return super().load_module(fqname, fp, pathname, file_info)


def imported_files(script: Path) -> set[str]:
    """Repository-relative paths of the modules ``script`` imports, directly or not, however deep in a function."""
    finder = LocalImports()
    finder.run_script(str(script))
    return {Path(m.__file__).relative_to(REPO).as_posix() for m in finder.modules.values() if m.__file__}


@pytest.mark.parametrize("stage", STAGE_MODULES)
def test_stage_lists_exactly_the_code_it_runs(stage):
    listed = [dep for dep in dep_paths(DVC_YAML["stages"][stage]) if dep.endswith(".py")]
    assert len(listed) == len(set(listed)), f"{stage}: a .py dep is listed twice"
    imported = imported_files(REPO / "stages" / f"{stage}.py") - DOCSTRING_ONLY_INITS
    assert not imported - set(listed), (
        f"{stage}: imports code that dvc.yaml does not list (a change would not rerun it)"
    )
    assert not set(listed) - imported, (
        f"{stage}: dvc.yaml lists code the stage does not import (or a package __init__.py now holds only a "
        "docstring, or holds more: see DOCSTRING_ONLY_INITS)"
    )


def test_training_does_not_depend_on_audio_io():
    """The reason readers live beside their formats: an edit to audio decoding must not retrain the VAE."""
    code = set(dep_paths(DVC_YAML["stages"]["train"]))
    assert not code & {
        "speakdigits/audio.py",
        "speakdigits/extraction.py",
        "speakdigits/formats/raw.py",
        "speakdigits/formats/features.py",
        "speakdigits/normalize.py",
    }
    assert "speakdigits/formats/normalized.py" in code


@pytest.mark.parametrize("stage", STAGE_MODULES)
def test_every_dep_exists_or_is_a_pipeline_output(stage):
    outs = {
        next(iter(o)) if isinstance(o, dict) else o
        for s in DVC_YAML["stages"].values()
        for key in ("outs", "metrics", "plots")
        for o in s.get(key, [])
    }
    for dep in dep_paths(DVC_YAML["stages"][stage]):
        assert (REPO / dep).exists() or dep in outs, f"stage {stage}: dep {dep} is neither a file nor an output"


def params_keys(stage: dict) -> list[str]:
    keys = []
    for item in stage.get("params", []):
        if isinstance(item, dict):  # {params_file: [keys]}
            for path, names in item.items():
                assert Path(path).name == "params.yaml", f"params from another file: {path}"
                keys.extend(names or [])
        else:
            keys.append(item)
    return keys


@pytest.mark.parametrize("stage", sorted(DVC_YAML["stages"]))
def test_every_listed_param_exists(stage):
    for key in params_keys(DVC_YAML["stages"][stage]):
        node = PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"stage {stage}: param '{key}' is not in params.yaml"
            node = node[part]


# ----------------------------------------------------------------- the checker itself


def test_closure_of_extract_is_what_it_imports():
    assert local_closure(REPO / "stages" / "extract.py") == {
        "stages/extract.py",
        "speakdigits/__init__.py",
        "stages/common.py",
        "speakdigits/extraction.py",
        "speakdigits/speakers.py",
        "speakdigits/streams.py",
        "speakdigits/audio.py",
        "speakdigits/wav.py",
        "speakdigits/formats/__init__.py",
        "speakdigits/formats/raw.py",
        "speakdigits/formats/features.py",
        "speakdigits/files.py",
        "speakdigits/params.py",
        "speakdigits/pitch.py",
        "speakdigits/errors.py",
        "speakdigits/cores.py",
        "speakdigits/librosa_kernels.py",
    }


def test_the_judges_are_not_retrained_by_experiments_on_the_vae():
    """classify: the normalised data and its own params only (dvc.yaml's note on it)."""
    stage = DVC_YAML["stages"]["classify"]
    deps = dep_paths(stage)
    assert {"speakdigits/classifier.py", "speakdigits/formats/normalized.py", "data/normalized"} <= set(deps)
    assert not set(deps) & {
        "speakdigits/model.py",
        "speakdigits/training.py",
        "speakdigits/generation.py",
        "speakdigits/vocoder.py",
        "data/model",
        "data/generated",
    }
    assert params_keys(stage) == ["seed", "classify"]


def test_the_mfcc_judge_hears_the_raw_recordings_through_a_front_end_of_its_own():
    deps = dep_paths(DVC_YAML["stages"]["mfcc_judge"])
    assert [dep for dep in deps if not dep.endswith(".py")] == ["data/params_checked.txt", "data/raw"]
    assert {"speakdigits/mfcc.py", "speakdigits/mfcc_judge.py", "speakdigits/wav.py"} <= set(deps)
    assert not set(deps) & {"speakdigits/audio.py", "speakdigits/extraction.py", "speakdigits/normalize.py"}


def test_the_mel_code_is_not_a_dependency_of_download():
    # Wav I/O has a module of its own: an edit to the log-mel made download (and everything after) stale.
    deps = DVC_YAML["stages"]["download"]["deps"]
    assert "speakdigits/wav.py" in deps and "speakdigits/audio.py" not in deps


def test_import_forms_are_resolved(tmp_path):
    """Relative, from-package, nested and TYPE_CHECKING imports, on files written here."""
    fake = tmp_path / "repo"
    (fake / "speakdigits" / "sub").mkdir(parents=True)
    (fake / "stages").mkdir()
    files = {
        "speakdigits/__init__.py": '"""Docstring only."""\n',
        "speakdigits/sub/__init__.py": "VALUE = 1\n",
        "speakdigits/sub/deep.py": "",
        "speakdigits/a.py": "from . import b\nfrom .sub.deep import x\n",
        "speakdigits/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from speakdigits import typed\n",
        "speakdigits/typed.py": "",
        "speakdigits/lazy.py": "",
        "speakdigits/unused.py": "",
        "stages/__init__.py": "",
        "stages/x.py": "import numpy\nimport speakdigits.a\ndef f():\n    from speakdigits import lazy\n",
    }
    for name, text in files.items():
        (fake / name).write_text(text)
    assert local_closure(fake / "stages" / "x.py", fake) == {
        "stages/x.py",
        "speakdigits/a.py",
        "speakdigits/b.py",
        "speakdigits/lazy.py",
        "speakdigits/sub/__init__.py",
        "speakdigits/sub/deep.py",
    }
