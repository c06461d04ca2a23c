"""librosa's compiled kernels, compiled (or loaded) by one process of the machine at a time.

librosa compiles its inner loops with numba and caches the machine code beside
its own files (``librosa/**/__pycache__/*.nbi`` and ``*.nbc``). numba reads that
cache's index, adds an entry and writes it back without a lock, so two processes
compiling kernels at once on a fresh install can leave an index that names one
signature's code for another's: every later call of that kernel, in every run,
is a segmentation fault until the cache is deleted. Seen on 2026-12-03 after the
extract stages of two runs started side by side on a fresh virtualenv, and made
again in 1 try in 4 by two processes calling ``librosa.pyin`` on a float32 and a
float64 clip at once. So every process that runs librosa's kernels first calls
:func:`ready`: the first to get there compiles them while the others wait, and
they then load what it saved.
"""

from __future__ import annotations

import fcntl
import functools
import os
import tempfile
from pathlib import Path

import numpy as np


@functools.cache
def ready() -> None:
    """Compile, or load from numba's cache, the librosa kernels this project runs (pYIN's and YIN's, with
    the utilities they load), for float32 and float64 clips, holding a lock that every process of this
    user on the machine takes for it (a file in the temporary folder). Once per process; cheap once the
    cache is made."""
    import librosa  # here: a stage that never runs librosa need not load it

    lock = Path(tempfile.gettempdir()) / f"speakdigits-librosa-kernels-{os.getuid()}.lock"
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, also if this raises
        for dtype in (np.float32, np.float64):
            tone = np.sin(2 * np.pi * 140 * np.arange(4096) / 16000).astype(dtype)
            librosa.pyin(tone, fmin=60, fmax=500, sr=16000, frame_length=1024)
            librosa.yin(tone, fmin=60, fmax=500, sr=16000, frame_length=1024)
