"""End to end: the data half of the pipeline (download, extract, normalize)
run by real DVC in a committed copy of the repository with tiny params, and
what a failed or interrupted stage leaves behind."""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from speakdigits.formats.raw import write_raw

from conftest import DVC, TINY_PARAMS, ran_stages, run, tool_env


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(repo: Path) -> list[str]:
    """Temporary folders of interrupted atomic writes under data/.

    Tests compare against what was there before they ran: the repository copy
    may hold such a folder copied from a stage running in the main checkout.
    """
    return sorted(p.name for p in (repo / "data").glob(".*.tmp"))


def test_repro_then_nothing_to_do_then_a_param_experiment(repo_copy):
    first = run(DVC + ["repro", "normalize"], repo_copy)
    assert ran_stages(first.stdout) == ["download", "extract", "normalize"]

    n_mels = TINY_PARAMS["mel"]["n_mels"]
    train = np.load(repo_copy / "data" / "normalized" / "train" / "x.npy")
    assert train.shape[1:] == (n_mels, TINY_PARAMS["mel"]["frames"])
    metrics = json.loads((repo_copy / "metrics" / "data.json").read_text())
    assert metrics["speakers"] == {"train": 2, "val": 1, "test": 1}
    assert sum(metrics["clips"].values()) == 4 * 10 * 2
    assert metrics["clips"]["train"] == len(train)
    raw_digest = sha256(repo_copy / "data" / "raw" / "audio.zip")

    status = run(DVC + ["status", "normalize"], repo_copy)
    assert "Data and pipelines are up to date." in status.stdout

    again = run(DVC + ["repro", "normalize"], repo_copy)
    assert ran_stages(again.stdout) == []
    for stage in ("download", "extract", "normalize"):
        assert f"Stage '{stage}' didn't change, skipping" in again.stdout

    exp = run(DVC + ["exp", "run", "normalize", "-S", "mel.n_mels=16"], repo_copy)
    assert ran_stages(exp.stdout) == ["extract", "normalize"]
    # The experiment's results are in the workspace.
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    assert params["mel"]["n_mels"] == 16
    assert np.load(repo_copy / "data" / "features" / "mels.npy", mmap_mode="r").shape[1] == 16
    for split in ("train", "val", "test"):
        x = np.load(repo_copy / "data" / "normalized" / split / "x.npy")
        assert x.shape[1:] == (16, TINY_PARAMS["mel"]["frames"])
        assert x.min() >= 0 and x.max() <= 1
    assert sha256(repo_copy / "data" / "raw" / "audio.zip") == raw_digest
    assert len(json.loads((repo_copy / "data" / "normalized" / "stats.json").read_text())["mel_min"]) == 16


def corrupt_member(archive: Path, index: int) -> str:
    """Flip bytes in the middle of the index-th stored member, so reading it fails its CRC."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[index]
    data = bytearray(archive.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    middle = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    archive.write_bytes(bytes(data))
    return info.filename


def test_failed_extract_leaves_no_half_written_output(repo_copy):
    before = leftovers(repo_copy)
    run(DVC + ["repro", "download"], repo_copy)
    corrupt_member(repo_copy / "data" / "raw" / "audio.zip", 41)  # about half way through the 80 clips

    result = run(DVC + ["repro", "--single-item", "extract"], repo_copy, check=False)
    assert result.returncode != 0
    assert "Running stage 'extract'" in result.stdout
    assert not (repo_copy / "data" / "features").exists()
    assert leftovers(repo_copy) == before
    lock = yaml.safe_load((repo_copy / "dvc.lock").read_text())
    assert "extract" not in lock["stages"]


def voiced_wav(sr: int = 22050) -> bytes:
    t = np.arange(sr) / sr
    buffer = io.BytesIO()
    sf.write(buffer, 0.5 * np.sin(2 * np.pi * 200 * t) * np.sin(np.pi * t), sr, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def session_processes(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except ProcessLookupError:
                pass
    return pids


def test_interrupted_extract_keeps_the_previous_output(repo_copy):
    leftovers_before = leftovers(repo_copy)
    clip = voiced_wav()
    write_raw(
        repo_copy / "data" / "raw",
        [(f"{i % 4:02d}/{i % 10}_{i % 4:02d}_{i}.wav", clip) for i in range(120)],
        {},
        {"source": "test"},
    )
    run([sys.executable, "-m", "stages.extract"], repo_copy)
    features = repo_copy / "data" / "features"
    before = {p.name: sha256(p) for p in features.iterdir()}
    assert set(before) == {"mels.npy", "pitch.npy", "clips.csv", "geometry.json", "report.json"}

    # Valid but heavy mel settings, so that extraction takes seconds.
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["mel"].update(sample_rate=96000, duration=10.0, n_mels=128, frames=1024, n_fft=8192, trim_db=None)
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    # Its own session, so that SIGINT reaches the workers too, as Ctrl-C in a terminal does; and
    # SIGINT's default action restored, as in a terminal: a shell started without job control
    # (`bash .ci/run &`) passes SIGINT on ignored, and Python keeps it ignored.
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.extract"],
        cwd=repo_copy,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        pattern = str(repo_copy / "data" / ".features.*.tmp" / "mels.npy")
        copied = set(glob.glob(pattern))  # see leftovers()
        while not set(glob.glob(pattern)) - copied:
            assert proc.poll() is None, f"extract ended before it could be interrupted: {proc.communicate()}"
            assert time.monotonic() < deadline, "extract never started writing"
            time.sleep(0.005)
        time.sleep(0.3)  # the workers are converting clips now
        assert proc.poll() is None, "extract finished too fast to be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 130, stderr
    # The stage's own last word (after tqdm's progress), and no worker's traceback: workers ignore Ctrl-C from
    # their start (speakdigits.cores.spawned_pool); one interrupted while importing once printed one here.
    assert stderr.splitlines()[-1] == "error: interrupted; nothing was written", stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert {p.name: sha256(p) for p in features.iterdir()} == before
    assert leftovers(repo_copy) == leftovers_before
    # The spawned workers, and multiprocessing's resource tracker, which leaves once they have.
    deadline = time.monotonic() + 10
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_processes(proc.pid) == [], "worker processes outlived the interrupted stage"


def fsdd_like_folder(folder: Path) -> None:
    """A few FSDD-style recordings (8 kHz, ``{digit}_{name}_{take}.wav``) and its ``metadata.py``."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for speaker in ("ann", "bob", "cy", "dee"):
        for digit in range(10):
            for take in range(2):
                tone = np.sin(2 * np.pi * (200 + 40 * digit) * np.arange(4000) / 8000) * rng.uniform(0.3, 0.9)
                sf.write(folder / f"{digit}_{speaker}_{take}.wav", tone.astype(np.float32), 8000, subtype="PCM_16")
    (folder / "metadata.py").write_text(
        '"""speakers"""\nmetadata = {\n    "ann": {"gender": "female"},\n'
        '    "bob": {"gender": "male"}, "cy": {"gender": "male"},\n'
        '    "dee": {"gender": "female"},\n}\n'
    )


def test_a_relative_local_source_works_in_the_workspace_and_in_the_queue(repo_copy):
    """``-S data.source=../shared/fsdd`` (a folder beside the repository) is read from the repository root,
    also by a queued experiment, which runs in a copy inside .dvc/tmp/exps."""
    fsdd_like_folder(repo_copy.parent / "shared" / "fsdd")
    result = run(DVC + ["exp", "run", "download", "-S", "data.source=../shared/fsdd"], repo_copy)
    assert ran_stages(result.stdout) == ["download"]
    source = json.loads((repo_copy / "data" / "raw" / "source.json").read_text())
    assert source["source"] == str((repo_copy.parent / "shared" / "fsdd").resolve())
    with zipfile.ZipFile(repo_copy / "data" / "raw" / "audio.zip") as archive:
        assert len(archive.namelist()) == 80
    assert json.loads((repo_copy / "data" / "raw" / "speakers.json").read_text())["ann"] == {"gender": "female"}

    run(["git", "checkout", "params.yaml"], repo_copy)
    queued = run(DVC + ["exp", "run", "--queue", "download", "-S", "data.source=../shared/fsdd"], repo_copy)
    name = queued.stdout.split("Queued experiment '")[1].split("'")[0]
    try:
        run(DVC + ["exp", "run", "--run-all"], repo_copy, timeout=300)
    finally:
        run(DVC + ["queue", "stop"], repo_copy, check=False)
    status = run(DVC + ["queue", "status"], repo_copy).stdout
    assert f"{name}" in status and "Success" in status, status


def test_queued_experiments_download_a_source_once_and_a_seed_change_remakes_no_data(repo_copy, server):
    """Two queued experiments side by side (each in its own copy of the repository) over an HTTP source:
    one GET, thanks to the machine-wide download cache and its lock. Then a seed change reruns
    normalize (the speaker split), not download or extract."""
    fsdd_like_folder(server.root / "fsdd")
    with zipfile.ZipFile(server.root / "fsdd.zip", "w") as archive:
        for path in sorted((server.root / "fsdd").iterdir()):
            archive.write(path, f"recordings/{path.name}")
    url = server.url("fsdd.zip")
    server.slow = 5.0  # so that the two downloads would overlap
    # They differ in a data.* key, so that DVC's run cache cannot serve the second download from the first.
    for noise_db in (-50, -55):
        run(
            DVC
            + [
                "exp",
                "run",
                "--queue",
                "normalize",
                "-S",
                f"data.source={url}",
                "-S",
                f"data.synthetic.noise_db={noise_db}",
            ],
            repo_copy,
        )
    # `queue start` leaves a daemon behind that inherits the command's stdout and stderr, and once kept them open
    # for as long as a celery worker hung in its shutdown: its output goes to a file, not to a pipe run() waits on.
    with open(repo_copy.parent / "queue-start.log", "w") as log:
        started = subprocess.run(
            DVC + ["queue", "start", "--jobs", "2"],
            cwd=repo_copy,
            env=tool_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    assert started.returncode == 0, (repo_copy.parent / "queue-start.log").read_text()
    try:
        deadline = time.monotonic() + 300
        while (status := run(DVC + ["queue", "status"], repo_copy).stdout).count("Success") < 2:
            assert "Failed" not in status and time.monotonic() < deadline, status
            time.sleep(2)
    finally:
        run(DVC + ["queue", "stop"], repo_copy, check=False)
    assert [path for path, _ in server.requests] == ["/fsdd.zip"]

    first = run(DVC + ["exp", "run", "normalize", "-S", f"data.source={url}"], repo_copy)
    assert ran_stages(first.stdout)[0] == "download"  # not yet in this workspace; from the machine's cache
    assert [path for path, _ in server.requests] == ["/fsdd.zip"]
    seed = yaml.safe_load((repo_copy / "params.yaml").read_text())["seed"] + 1
    again = run(DVC + ["exp", "run", "normalize", "-S", f"seed={seed}"], repo_copy)
    assert ran_stages(again.stdout) == ["normalize"]
