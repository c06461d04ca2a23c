"""The extract stage's output: every usable clip as a log-mel image, with its labels.

``mels.npy`` holds float32 images (clips x n_mels x frames, in dB);
``clips.csv`` one row per image (:data:`CLIP_COLUMNS`); ``report.json`` the
files skipped, with reasons, the metadata notes and the counts.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import BinaryIO

import numpy as np

from speakdigits.errors import PipelineError
from speakdigits.formats import missing

DIR = Path("data/features")
STAGE = "extract"
MELS_NPY = "mels.npy"
CLIPS_CSV = "clips.csv"
REPORT_JSON = "report.json"
CLIP_COLUMNS = ("file", "digit", "speaker", "take", "gender", "age")


def open_mels(out_dir: Path, *, image_shape: tuple[int, int], most_clips: int) -> BinaryIO:
    """Start ``mels.npy`` in ``out_dir`` (a stage's temporary folder) for images appended as they are made.

    The header is written for ``most_clips`` images and corrected by
    :func:`close_mels`, so the rows go straight to the file and memory stays
    flat. Write each image as little-endian float32 bytes, in order.
    """
    handle = open(Path(out_dir) / MELS_NPY, "wb")
    handle.write(_header(most_clips, image_shape))
    return handle


def close_mels(handle: BinaryIO, *, clips: int, image_shape: tuple[int, int]) -> None:
    """Write the header for the ``clips`` images written, in place, and close the file."""
    header = _header(clips, image_shape)
    # NumPy pads every header so that its first axis can grow to 21 digits in place.
    if handle.tell() - clips * 4 * image_shape[0] * image_shape[1] != len(header):
        raise RuntimeError(f"{handle.name}: {clips} images do not fill the file behind its header")
    handle.seek(0)
    handle.write(header)
    handle.close()


def _header(clips: int, image_shape: tuple[int, int]) -> bytes:
    header = io.BytesIO()
    description = {"descr": "<f4", "fortran_order": False, "shape": (clips, *image_shape)}
    np.lib.format.write_array_header_1_0(header, description)
    return header.getvalue()


def write_features(out_dir: Path, *, clips: list[tuple], report: dict) -> None:
    """Write ``clips.csv`` and ``report.json`` into ``out_dir``, beside the ``mels.npy`` of :func:`open_mels`.

    Parameters
    ----------
    clips : list of tuple
        One :data:`CLIP_COLUMNS` row per image (age None when unknown).
    report : dict
        Written as ``report.json``.
    """
    out_dir = Path(out_dir)
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
