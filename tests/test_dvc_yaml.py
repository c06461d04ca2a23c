"""dvc.yaml is what ``python -m stages.dvc_yaml`` writes, and what it writes is right.

The code dependencies of each stage come from its import closure (read with
``ast``, starting at ``stages/X.py``): a missing one means DVC would not rerun
the stage when that code changes, an extra one means needless reruns. Package
``__init__.py`` files are part of the closure only when they hold more than a
docstring. Imports guarded by ``if TYPE_CHECKING:`` never run and do not count.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages import dvc_yaml
from stages.dvc_yaml import STAGES, local_closure

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


def test_every_stage_runs_its_own_module():
    assert list(DVC_YAML["stages"]) == list(STAGES)
    for name, stage in DVC_YAML["stages"].items():
        assert stage["cmd"] == f"python -m stages.{name}"
        assert (REPO / "stages" / f"{name}.py").is_file()


@pytest.mark.parametrize("stage", STAGES)
def test_stage_lists_exactly_the_code_it_runs(stage):
    closure = local_closure(REPO / "stages" / f"{stage}.py")
    listed = [dep for dep in dep_paths(DVC_YAML["stages"][stage]) if dep.endswith(".py")]
    assert len(listed) == len(set(listed)), f"{stage}: a .py dep is listed twice"
    assert set(listed) == closure


def test_training_does_not_depend_on_audio_io():
    """The reason readers live beside their formats: an edit to audio decoding must not retrain the VAE."""
    code = set(dep_paths(DVC_YAML["stages"]["train"]))
    assert not code & {
        "speakdigits/audio.py",
        "speakdigits/features.py",
        "speakdigits/formats/raw.py",
        "speakdigits/formats/features.py",
        "speakdigits/normalize.py",
    }
    assert "speakdigits/formats/normalized.py" in code


@pytest.mark.parametrize("stage", STAGES)
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
        "speakdigits/features.py",
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
    }


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
