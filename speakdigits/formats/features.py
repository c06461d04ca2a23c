"""The extract stage's output: every usable clip as a log-mel image and a pitch track, with its labels.

``mels.npy`` holds float32 images (clips x n_mels x frames, in dB);
``pitch.npy`` float32 pitch tracks (clips x 2 x frames: f0 in Hz and voicing,
:mod:`speakdigits.pitch`), row for row; ``clips.csv`` one row per image
(:data:`CLIP_COLUMNS`); ``geometry.json`` the mel geometry the features were
made with (the ``mel`` params, ``fmax`` resolved: every later stage reads it
from here, through the model); ``report.json`` the files skipped, with
reasons, the metadata notes and the counts.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from speakdigits.errors import PipelineError
from speakdigits.files import write_json
from speakdigits.formats import geometry_from, missing, read_stage_json, rerun, write_geometry
from speakdigits.params import MelParams

DIR = Path("data/features")
STAGE = "extract"
MELS_NPY = "mels.npy"
PITCH_NPY = "pitch.npy"
CLIPS_CSV = "clips.csv"
REPORT_JSON = "report.json"
GEOMETRY_JSON = "geometry.json"
CLIP_COLUMNS = ("file", "digit", "speaker", "take", "gender", "age")


def start_rows(path: Path, *, row_shape: tuple[int, int], most_clips: int) -> Path:
    """Start a ``.npy`` file of one row per clip (``mels.npy``, ``pitch.npy``), to be filled in place.

    Writers put row ``r`` at :func:`row_offset` ``(r)`` as little-endian
    float32 bytes, each straight to the file, so memory stays flat and several
    processes can write at once; :func:`finish_rows` closes up the rows left
    empty and corrects the header, written here for ``most_clips`` rows.
    """
    path = Path(path)
    path.write_bytes(_header(most_clips, row_shape))
    return path


def row_offset(row: int, row_shape: tuple[int, int]) -> int:
    """Where row ``row`` of a :func:`start_rows` file starts."""
    # NumPy pads every header so that its first axis can grow to 21 digits in place: one length for all counts.
    return len(_header(0, row_shape)) + row * _row_bytes(row_shape)


def finish_rows(path: Path, *, blocks: list[tuple[int, int]], row_shape: tuple[int, int]) -> int:
    """Close up a :func:`start_rows` file and write its header; returns the number of rows.

    Parameters
    ----------
    blocks : list of (int, int)
        ``(first row, rows)`` of every block written, in order; the rows
        between blocks (clips that could not be used) are removed by moving
        the later blocks up, a few megabytes at a time.
    """
    row_bytes = _row_bytes(row_shape)
    with open(path, "r+b") as handle:
        clips = 0
        for first, count in blocks:
            if first != clips:
                for done in range(0, count * row_bytes, _MOVE_BYTES):
                    handle.seek(row_offset(first, row_shape) + done)
                    chunk = handle.read(min(_MOVE_BYTES, count * row_bytes - done))
                    handle.seek(row_offset(clips, row_shape) + done)
                    handle.write(chunk)
            clips += count
        handle.truncate(row_offset(clips, row_shape))
        handle.seek(0)
        handle.write(_header(clips, row_shape))
    return clips


_MOVE_BYTES = 16 << 20


def _row_bytes(row_shape: tuple[int, int]) -> int:
    return 4 * row_shape[0] * row_shape[1]


def _header(clips: int, row_shape: tuple[int, int]) -> bytes:
    header = io.BytesIO()
    description = {"descr": "<f4", "fortran_order": False, "shape": (clips, *row_shape)}
    np.lib.format.write_array_header_1_0(header, description)
    return header.getvalue()


def write_features(out_dir: Path, *, clips: list[tuple], report: dict, geometry: MelParams) -> None:
    """Write ``clips.csv``, ``geometry.json`` and ``report.json`` into ``out_dir``, beside the
    ``mels.npy`` and ``pitch.npy`` of :func:`start_rows`.

    Parameters
    ----------
    clips : list of tuple
        One :data:`CLIP_COLUMNS` row per image (age None when unknown).
    report : dict
        Written as ``report.json``.
    geometry : MelParams
        The mel geometry of the features, ``fmax`` resolved.
    """
    out_dir = Path(out_dir)
    with open(out_dir / CLIPS_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CLIP_COLUMNS)
        writer.writerows([(*row[:5], "" if row[5] is None else row[5]) for row in clips])
    write_json(out_dir / REPORT_JSON, report)
    write_geometry(out_dir / GEOMETRY_JSON, geometry)


def read_features(features_dir: Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Open the extract stage's output.

    Returns
    -------
    mels : numpy.ndarray
        Memory-mapped float32 array, clips x n_mels x frames.
    pitch : numpy.ndarray
        Memory-mapped float32 array, clips x 2 x frames (f0 in Hz, voicing).
    clips : list of dict
        One row of ``clips.csv`` per clip (digit and take as int, age as int
        or None).
    """
    features_dir = Path(features_dir)
    try:
        mels = np.load(features_dir / MELS_NPY, mmap_mode="r", allow_pickle=False)
        pitch = np.load(features_dir / PITCH_NPY, mmap_mode="r", allow_pickle=False)
        with open(features_dir / CLIPS_CSV, newline="", encoding="utf-8") as handle:
            clips = list(csv.DictReader(handle))
    except FileNotFoundError as err:
        raise missing(err.filename, STAGE) from None
    for clip in clips:
        clip["digit"], clip["take"] = int(clip["digit"]), int(clip["take"])
        clip["age"] = int(clip["age"]) if clip["age"] else None
    if not len(clips) == len(mels) == len(pitch):
        raise PipelineError(
            f"{features_dir}: {len(mels)} mel images, {len(pitch)} pitch tracks and {len(clips)} rows in "
            f"{CLIPS_CSV}; {rerun(STAGE)}"
        )
    return mels, pitch, clips


def read_geometry(features_dir: Path) -> MelParams:
    """The mel geometry the features were made with (``geometry.json``)."""
    return geometry_from(read_stage_json(Path(features_dir) / GEOMETRY_JSON, STAGE), Path(features_dir) / GEOMETRY_JSON)
