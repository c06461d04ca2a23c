"""The generate stage's output: new clips, their mels and a grid to look at.

One wav file per clip (``7_02.wav`` when digit 7 was asked for, else
``sample_005.wav``), ``mels.npy`` (the decoder's images of the clips,
normalised to [0, 1], clips x n_mels x frames, in ``samples.json`` order),
``samples.json`` (one record per clip: ``file``, ``digit`` or None,
``seconds``, ``peak``) and ``mels.png`` (a grid of the images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speakdigits.errors import PipelineError
from speakdigits.formats import missing, read_stage_json, rerun

DIR = Path("data/generated")
STAGE = "generate"
SAMPLES_JSON = "samples.json"
GRID_PNG = "mels.png"
MELS_NPY = "mels.npy"


def wav_names(digits: list[int | None]) -> list[str]:
    """File names: the digit first (``7_02.wav``) when it was asked for, else ``sample_005.wav``."""
    names, counts = [], {}
    for digit in digits:
        if digit is None:
            names.append(f"sample_{len(names):03d}.wav")
        else:
            counts[digit] = counts.get(digit, 0)
            names.append(f"{digit}_{counts[digit]:02d}.wav")
            counts[digit] += 1
    return names


def output_names(digits: list[int | None]) -> list[str]:
    """Every file the generate stage writes for these clips."""
    return wav_names(digits) + [GRID_PNG, MELS_NPY, SAMPLES_JSON]


def read_generated(generated_dir: Path) -> list[dict]:
    """The clip records (``file``, ``digit`` or None), with each file's bytes as ``wav``."""
    path = Path(generated_dir) / SAMPLES_JSON
    records = read_stage_json(path, STAGE)
    for record in records:
        try:
            record["wav"] = (Path(generated_dir) / record["file"]).read_bytes()
        except FileNotFoundError:
            raise PipelineError(
                f"{Path(generated_dir) / record['file']}: listed in {path} but missing; {rerun(STAGE)}"
            ) from None
    return records


def read_generated_mels(generated_dir: Path, count: int) -> np.ndarray:
    """The decoder's images of the generated clips (``mels.npy``), one per clip of ``samples.json``."""
    path = Path(generated_dir) / MELS_NPY
    try:
        mels = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise missing(path, STAGE) from None
    if len(mels) != count:
        raise PipelineError(f"{path}: {len(mels)} images for {count} clips in {SAMPLES_JSON}; {rerun(STAGE)}")
    return mels
