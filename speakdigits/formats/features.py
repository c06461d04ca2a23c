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

import numpy as np

from speakdigits.errors import PipelineError
from speakdigits.formats import missing

DIR = Path("data/features")
STAGE = "extract"
MELS_NPY = "mels.npy"
CLIPS_CSV = "clips.csv"
REPORT_JSON = "report.json"
CLIP_COLUMNS = ("file", "digit", "speaker", "take", "gender", "age")


def start_mels(out_dir: Path, *, image_shape: tuple[int, int], most_clips: int) -> Path:
    """Start ``mels.npy`` in ``out_dir`` (a stage's temporary folder), to be filled in place.

    Writers put the image of row ``r`` at :func:`mels_offset` ``(r)`` as
    little-endian float32 bytes, each straight to the file, so memory stays
    flat and several processes can write at once; :func:`finish_mels` closes
    up the rows left empty and corrects the header, written here for
    ``most_clips`` images.
    """
    path = Path(out_dir) / MELS_NPY
    path.write_bytes(_header(most_clips, image_shape))
    return path


def mels_offset(row: int, image_shape: tuple[int, int]) -> int:
    """Where row ``row`` of a :func:`start_mels` file starts."""
    # NumPy pads every header so that its first axis can grow to 21 digits in place: one length for all counts.
    return len(_header(0, image_shape)) + row * _row_bytes(image_shape)


def finish_mels(path: Path, *, blocks: list[tuple[int, int]], image_shape: tuple[int, int]) -> int:
    """Close up a :func:`start_mels` file and write its header; returns the number of images.

    Parameters
    ----------
    blocks : list of (int, int)
        ``(first row, rows)`` of every block written, in order; the rows
        between blocks (clips that could not be used) are removed by moving
        the later blocks up, a few megabytes at a time.
    """
    row_bytes = _row_bytes(image_shape)
    with open(path, "r+b") as handle:
        clips = 0
        for first, count in blocks:
            if first != clips:
                for done in range(0, count * row_bytes, _MOVE_BYTES):
                    handle.seek(mels_offset(first, image_shape) + done)
                    chunk = handle.read(min(_MOVE_BYTES, count * row_bytes - done))
                    handle.seek(mels_offset(clips, image_shape) + done)
                    handle.write(chunk)
            clips += count
        handle.truncate(mels_offset(clips, image_shape))
        handle.seek(0)
        handle.write(_header(clips, image_shape))
    return clips


_MOVE_BYTES = 16 << 20


def _row_bytes(image_shape: tuple[int, int]) -> int:
    return 4 * image_shape[0] * image_shape[1]


def _header(clips: int, image_shape: tuple[int, int]) -> bytes:
    header = io.BytesIO()
    description = {"descr": "<f4", "fortran_order": False, "shape": (clips, *image_shape)}
    np.lib.format.write_array_header_1_0(header, description)
    return header.getvalue()


def write_features(out_dir: Path, *, clips: list[tuple], report: dict) -> None:
    """Write ``clips.csv`` and ``report.json`` into ``out_dir``, beside the ``mels.npy`` of :func:`start_mels`.

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
