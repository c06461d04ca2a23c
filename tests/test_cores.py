"""Cores: the count comes from the process's CPU affinity (capped by $SPEAKDIGITS_CORES), worker
processes keep their numerical libraries to one thread, and results do not depend on the worker count."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from speakdigits import TENSORFLOW_KERNELS
from speakdigits.cores import CORES_ENV, available_cores, init_worker, spawned_pool
from speakdigits.errors import PipelineError
from speakdigits.params import MelParams
from speakdigits.vocoder import CLIPS_PER_PROCESS, synthesize_many

from conftest import REPO

COUNT_ON_ONE_CORE = (
    "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
    "from speakdigits.cores import available_cores; print(available_cores())"
)


def test_the_count_is_the_affinity_not_the_machine():
    env = {k: v for k, v in os.environ.items() if k != CORES_ENV}
    out = subprocess.run(
        [sys.executable, "-c", COUNT_ON_ONE_CORE], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "1"  # however many cores the machine has
    assert available_cores() == len(os.sched_getaffinity(0)) or CORES_ENV in os.environ


def test_the_environment_variable_caps_it(monkeypatch):
    monkeypatch.setenv(CORES_ENV, "1")
    assert available_cores() == 1
    monkeypatch.setenv(CORES_ENV, "999")
    assert available_cores() == len(os.sched_getaffinity(0))
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(CORES_ENV, bad)
        with pytest.raises(PipelineError, match=rf"^{CORES_ENV}='{bad}': expected a positive number of cores$"):
            available_cores()


def _blas_threads(_: int) -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info()]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes_use_one_thread_per_library(method):
    np.ones((64, 64)) @ np.ones((64, 64))  # the parent's BLAS is loaded (and may use every core)
    with multiprocessing.get_context(method).Pool(2, initializer=init_worker) as pool:
        for threads in pool.map(_blas_threads, range(2)):
            assert threads and set(threads) == {1}, threads


_SIGINT_AT_START = []


def _note_sigint() -> None:
    """An initializer that records how the worker was started to treat Ctrl-C, before anything changes it."""
    _SIGINT_AT_START.append(signal.getsignal(signal.SIGINT))


def _sigint_at_start(_: int) -> bool:
    return _SIGINT_AT_START == [signal.SIG_IGN]


def test_spawned_workers_ignore_ctrl_c_from_their_start_and_the_parent_keeps_its_handler():
    before = signal.getsignal(signal.SIGINT)
    with spawned_pool(2, initializer=_note_sigint) as pool:
        # A worker that began by raising KeyboardInterrupt would print a traceback if Ctrl-C came while it imports.
        assert pool.map(_sigint_at_start, range(2)) == [True, True]
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("vocoder", ["harmonic", "griffin_lim"])
def test_the_vocoders_give_the_same_clips_on_any_number_of_processes(vocoder):
    mel = MelParams(
        sample_rate=8000, duration=0.25, n_mels=16, frames=16, n_fft=256, fmin=0.0, fmax=None, trim_db=None, top_db=80.0
    )
    count = 2 * CLIPS_PER_PROCESS  # enough for two processes
    rng = np.random.default_rng(0)
    images = rng.uniform(-60, 0, (count, 16, 16)).astype(np.float32)
    pitch = np.stack([rng.uniform(90, 250, (count, 16)), rng.uniform(0, 1, (count, 16))], axis=1).astype(np.float32)
    kwargs = dict(mel=mel, vocoder=vocoder, n_iter=4, momentum=0.99, seeds=list(range(count)))
    one, two = (synthesize_many(images, pitch, jobs=jobs, **kwargs) for jobs in (1, 2))
    assert len(one) == count and all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    assert not np.array_equal(one[0], one[1])  # each its own seed


ONEDNN_SETTINGS = "import os, speakdigits; print(os.environ['TF_ENABLE_ONEDNN_OPTS'], os.environ['ONEDNN_MAX_CPU_ISA'])"


@pytest.mark.parametrize(
    ("given", "expected"),
    [({}, "1 AVX2"), ({"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "SSE41"}, "0 SSE41")],
)
def test_tensorflow_gets_onednn_unless_the_environment_says_otherwise(given, expected):
    """The package sets TensorFlow's kernel choice before anything can load TensorFlow; a user's value wins."""
    env = {k: v for k, v in os.environ.items() if k not in TENSORFLOW_KERNELS}
    out = subprocess.run(
        [sys.executable, "-c", ONEDNN_SETTINGS],
        cwd=REPO,
        env={**env, **given},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split("\n")[0]
    assert out == expected


def test_a_stage_imports_the_package_before_tensorflow():
    """TensorFlow reads the oneDNN settings once, when it loads: the stages must reach speakdigits first."""
    source = (REPO / "stages" / "common.py").read_text(encoding="utf-8")
    assert source.index("from speakdigits") < source.index("import keras")


# Runs librosa's kernels the way a stage does, then says so.
_KERNEL_USERS = {
    "pitch.track": "from speakdigits import pitch; from speakdigits.params import MelParams; "
    "pitch.track(np.zeros(16000, np.float32), mel=MelParams(16000, 1.0, 64, 64, 1024, 0.0, None, 40.0, 80.0))",
    "quality.voicing": "from speakdigits import quality; quality.voicing(np.zeros(16000, np.float32))",
    "a worker's initializer": "from speakdigits.cores import init_worker; init_worker()",
}


def _waiting_for_a_lock(pid: int) -> bool:
    # /proc/locks lists a blocked request as "N: -> FLOCK  ADVISORY  WRITE <pid> ...".
    return any("->" in line and f" {pid} " in line for line in open("/proc/locks"))


@pytest.mark.parametrize("user", sorted(_KERNEL_USERS))
def test_librosas_kernels_are_compiled_by_one_process_at_a_time(user, tmp_path):
    """numba writes librosa's cache of compiled kernels without a lock, and two processes compiling at
    once could leave it naming one kernel's code for another (every later run: a segmentation fault,
    speakdigits.librosa_kernels). So whatever runs them first takes a lock of the machine's: while
    another process holds it, this one waits, and goes on once it is free."""
    import fcntl

    lock = tmp_path / f"speakdigits-librosa-kernels-{os.getuid()}.lock"
    script = f"import numpy as np; {_KERNEL_USERS[user]}; print('done')"
    # TMPDIR: this test's own lock, which the other tests' processes never wait for.
    env = dict(os.environ, TMPDIR=str(tmp_path))
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(1200):  # up to 60 s to import its libraries and reach the lock
                if _waiting_for_a_lock(child.pid) or child.poll() is not None:
                    break
                time.sleep(0.05)
            assert child.poll() is None and _waiting_for_a_lock(child.pid), f"{user} did not wait for the lock"
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 0 and out.strip().endswith("done")
