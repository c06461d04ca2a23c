"""Shared fixtures: a temporary copy of the repository with its own git commit.

``dvc exp run`` and the queue only see what git tracks, so every end-to-end
test works in a fresh copy of the repository, committed, with a tiny
configuration that runs in seconds on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

# A few synthetic speakers and small spectrograms: enough to exercise every
# stage, quick on 2 cores.
TINY_PARAMS = {
    "data": {"synthetic": {"speakers": 4, "takes": 2}},
    "mel": {"n_mels": 32, "frames": 32},
    "split": {"val_fraction": 0.25, "test_fraction": 0.25},
}


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied key by key (nested dicts merged)."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tool_env() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's tools first, no telemetry."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update({
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATER": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "no_proxy": "*",
    })
    return env


def run(args: list[str], cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command, capture its output, and fail with that output if it fails."""
    result = subprocess.run(args, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def ran_stages(output: str) -> list[str]:
    """Names of the stages DVC says it ran, from ``Running stage 'x':`` lines."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


def make_repo_copy(dest: Path, params: dict | None = None) -> Path:
    """Copy the repository's source files into ``dest``, set params, and commit.

    Only files git knows about (tracked, or new and not ignored) are copied, as
    on a fresh clone; ``data/``, caches and virtualenvs stay behind.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        # Skip results and half-built stage outputs (``data/.features.*.tmp``) of runs in the checkout.
        if source.is_file() and not name.startswith(("dvc.lock", "metrics/", "data/")):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (dest / "metrics").mkdir(exist_ok=True)
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(base, merge(TINY_PARAMS, params or {})), sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "test copy"], dest)
    return dest


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A committed copy of the repository with the tiny params."""
    return make_repo_copy(tmp_path / "repo")
