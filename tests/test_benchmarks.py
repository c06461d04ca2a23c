"""The benchmark's own parts (``python -m benchmarks``): correctness only, no timings.

The whole benchmark takes minutes; these check what its figures rest on: the
original loop makes the notebook's 50 x 50 images, a measured job's peak
memory and CPU time are those of the process that ran, and the fastest of
the repeated runs is the one kept.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from benchmarks.__main__ import Measured, fastest, measured, scratch
from benchmarks.original import extract as original_extract
from speakdigits import TENSORFLOW_KERNELS

from conftest import REPO, tool_env


def test_the_original_loop_makes_50_by_50_log_mels_of_every_wav_below_a_folder(tmp_path):
    rng = np.random.default_rng(0)
    for index, (sr, seconds) in enumerate([(48000, 0.6), (8000, 1.3), (22050, 1.0)]):
        folder = tmp_path / f"speaker{index}"
        folder.mkdir()
        sf.write(folder / f"{index}_s{index}_0.wav", 0.3 * rng.standard_normal(int(sr * seconds)), sr)
    mels = original_extract(tmp_path)
    assert mels.shape == (3, 50, 50) and mels.dtype == np.float32
    assert np.all(np.isfinite(mels)) and mels.max() > -20  # loud noise, in dB


def test_a_measured_job_reports_its_own_peak_memory_and_cpu_time(tmp_path):
    # 300 MB touched, then a second of arithmetic; measured from a fresh process, as
    # `python -m benchmarks` runs (a launcher's own memory would count: see measured()).
    job = (
        "import numpy as np, time\nblock = np.ones(300 * 2**20 // 8)\nstart = time.process_time()\n"
        "while time.process_time() - start < 1.0: block[:1000] += 1\nprint('done')"
    )
    launcher = (
        "import json, sys\nfrom pathlib import Path\nfrom benchmarks.__main__ import measured\n"
        "m = measured([sys.executable, '-c', sys.argv[1]], Path(sys.argv[2]))\n"
        "print(json.dumps([m.wall, m.cpu, m.peak_mb, m.stdout]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", launcher, job, str(tmp_path)],
        cwd=REPO,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    wall, cpu, peak_mb, stdout = json.loads(out.stdout)
    assert stdout.strip() == "done"
    assert 300 <= peak_mb < 600
    assert cpu >= 1.0 and wall >= cpu * 0.5


def test_the_fastest_of_the_runs_taking_turns_is_kept():
    order = []
    walls = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 6.0, 4.0])}

    def job(name):
        def run():
            order.append(name)
            return Measured(next(walls[name]), 0.0, 0.0, "")

        return run

    best = fastest({"a": job("a"), "b": job("b")}, repeat=3)
    assert order == ["a", "b"] * 3
    assert best["a"].wall == 1.0 and best["b"].wall == 4.0


def test_scratch_folders_get_the_repositorys_params_with_overrides(tmp_path):
    import yaml

    folder = scratch(tmp_path, "run", {"mel.n_mels": 50, "data.source": "/somewhere"})
    params = yaml.safe_load((folder / "params.yaml").read_text())
    original = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["mel"]["n_mels"] == 50 and params["data"]["source"] == "/somewhere"
    assert params["mel"]["frames"] == original["mel"]["frames"] and params["vae"] == original["vae"]


def test_a_job_can_run_without_the_packages_tensorflow_settings(tmp_path, monkeypatch):
    """The original's jobs run with TensorFlow's default kernels: the settings this package makes are taken out."""
    show = "import os, sys; sys.stdout.write(os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset'))"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # as importing speakdigits sets it
    assert measured([sys.executable, "-c", show], tmp_path).stdout == "1"
    assert measured([sys.executable, "-c", show], tmp_path, unset=tuple(TENSORFLOW_KERNELS)).stdout == "unset"
