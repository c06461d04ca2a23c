"""The normalize stage's output: the speaker-disjoint splits, scaled to [0, 1].

Each split is a folder of ``.npy`` files (plain arrays, byte-identical from run
to run): ``x`` (float32 clips x n_mels x frames in [0, 1]), ``pitch``
(float32 clips x 2 x frames in [0, 1]: f0 on a log scale and voicing,
:func:`speakdigits.pitch.to_unit`), ``digit`` (int), ``speaker`` (str),
``take`` (int, from the file name), ``gender`` (str) and ``age`` (int, -1 when
unknown). ``stats.json`` holds ``mel_min`` and ``mel_max`` (dB per mel bin,
from the training split), the scaling that :func:`denormalize` undoes, and
``mel``, the geometry of the features (:func:`load_geometry`); ``split.json``
lists the speakers of each split.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from speakdigits.files import write_json
from speakdigits.formats import geometry_from, missing, read_stage_json
from speakdigits.params import MelParams

DIR = Path("data/normalized")
STAGE = "normalize"
SPLITS = ("train", "val", "test")
LABELS = ("digit", "speaker", "take", "gender", "age")
#: The arrays of a split: the two features, then the labels.
ARRAYS = ("x", "pitch", *LABELS)
STATS_JSON = "stats.json"
SPLIT_JSON = "split.json"


def scale(mels: np.ndarray, mel_min: np.ndarray, mel_max: np.ndarray) -> np.ndarray:
    """Map dB values into [0, 1] with the training statistics (clipping outside values)."""
    span = np.maximum(mel_max - mel_min, 1e-6)[None, :, None]
    return np.clip((np.asarray(mels, dtype=np.float32) - mel_min[None, :, None]) / span, 0.0, 1.0).astype(np.float32)


def denormalize(images: np.ndarray, mel_min: np.ndarray, mel_max: np.ndarray) -> np.ndarray:
    """Undo :func:`scale`: images in [0, 1] back to dB."""
    span = np.maximum(mel_max - mel_min, 1e-6)[None, :, None]
    return (np.asarray(images, dtype=np.float32) * span + mel_min[None, :, None]).astype(np.float32)


def write_split(out_dir: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    """One split's arrays (:data:`ARRAYS`) as ``out_dir/name/<key>.npy``."""
    folder = Path(out_dir) / name
    folder.mkdir()
    for key, array in arrays.items():
        np.save(folder / f"{key}.npy", array, allow_pickle=False)


def write_stats(
    out_dir: Path, *, mel_min: np.ndarray, mel_max: np.ndarray, speakers: dict[str, list[str]], geometry: MelParams
) -> None:
    """``stats.json`` (the training split's per-bin dB range, the features' geometry) and ``split.json``
    (each split's speakers)."""
    stats = {"mel_min": mel_min.tolist(), "mel_max": mel_max.tolist(), "mel": dataclasses.asdict(geometry)}
    write_json(Path(out_dir) / STATS_JSON, stats)
    write_json(Path(out_dir) / SPLIT_JSON, speakers)


def load_split(normalized_dir: Path, name: str) -> dict[str, np.ndarray]:
    """Read one split: :data:`ARRAYS`."""
    folder = Path(normalized_dir) / name
    try:
        return {key: np.load(folder / f"{key}.npy", allow_pickle=False) for key in ARRAYS}
    except FileNotFoundError as err:
        raise missing(err.filename, STAGE) from None


def load_stats(normalized_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training split's per-bin ``(mel_min, mel_max)`` in dB."""
    stats = read_stage_json(Path(normalized_dir) / STATS_JSON, STAGE)
    return np.array(stats["mel_min"], dtype=np.float32), np.array(stats["mel_max"], dtype=np.float32)


def load_geometry(normalized_dir: Path) -> MelParams:
    """The mel geometry of the features the splits were made from."""
    path = Path(normalized_dir) / STATS_JSON
    return geometry_from(read_stage_json(path, STAGE).get("mel"), path)
