"""The extract stage's output: every usable clip as a log-mel image, with its labels.

``mels.npy`` holds float32 images (clips x n_mels x frames, in dB);
``clips.csv`` one row per image (:data:`CLIP_COLUMNS`); ``report.json`` the
files skipped, with reasons, the metadata notes and the counts.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from speakdigits.errors import PipelineError
from speakdigits.formats import missing

DIR = Path("data/features")
STAGE = "extract"
MELS_NPY = "mels.npy"
CLIPS_CSV = "clips.csv"
REPORT_JSON = "report.json"
CLIP_COLUMNS = ("file", "digit", "speaker", "take", "gender", "age")


def write_features(out_dir: Path, *, rows_path: Path, shape: tuple[int, ...], clips: list[tuple], report: dict) -> None:
    """Write the three files into ``out_dir`` (a stage's temporary folder).

    Parameters
    ----------
    rows_path : Path
        The images as raw little-endian float32 rows, in order; copied in
        chunks behind the ``.npy`` header, so memory stays flat.
    shape : tuple of int
        ``(clips, n_mels, frames)``.
    clips : list of tuple
        One :data:`CLIP_COLUMNS` row per image (age None when unknown).
    report : dict
        Written as ``report.json``.
    """
    out_dir = Path(out_dir)
    with open(out_dir / MELS_NPY, "wb") as out, open(rows_path, "rb") as rows:
        np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": shape})
        shutil.copyfileobj(rows, out, length=16 << 20)
    with open(out_dir / CLIPS_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CLIP_COLUMNS)
        writer.writerows([(*row[:5], "" if row[5] is None else row[5]) for row in clips])
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def read_features(features_dir: Path) -> tuple[np.ndarray, list[dict]]:
    """Open the extract stage's output.

    Returns
    -------
    mels : numpy.ndarray
        Memory-mapped float32 array, clips x n_mels x frames.
    clips : list of dict
        One row of ``clips.csv`` per clip (digit and take as int, age as int
        or None).
    """
    features_dir = Path(features_dir)
    try:
        mels = np.load(features_dir / MELS_NPY, mmap_mode="r", allow_pickle=False)
        with open(features_dir / CLIPS_CSV, newline="", encoding="utf-8") as handle:
            clips = list(csv.DictReader(handle))
    except FileNotFoundError as err:
        raise missing(err.filename, STAGE) from None
    for clip in clips:
        clip["digit"], clip["take"] = int(clip["digit"]), int(clip["take"])
        clip["age"] = int(clip["age"]) if clip["age"] else None
    if len(clips) != len(mels):
        raise PipelineError(f"{features_dir}: {len(mels)} mel images but {len(clips)} rows in {CLIPS_CSV}")
    return mels, clips
