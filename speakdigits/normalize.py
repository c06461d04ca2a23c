"""The ``normalize`` stage: speaker-disjoint splits and train-only min/max scaling.

The original notebook fitted min/max on all the data, test set included; here
the statistics come from the training speakers only, and are saved so that
generated spectrograms can be mapped back to dB (:func:`denormalize`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from speakdigits.errors import PipelineError
from speakdigits.features import read_features
from speakdigits.files import atomic_dir, read_stage_json

SPLITS = ("train", "val", "test")
STATS_JSON = "stats.json"
LABELS = ("digit", "speaker", "take", "gender", "age")
SPLIT_JSON = "split.json"


def split_speakers(speakers: list[str], *, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Deal speakers into train, validation and test, none in two of them.

    Parameters
    ----------
    speakers : list of str
        Distinct speaker ids.
    val_fraction, test_fraction : float
        Shares of the speakers (rounded, at least one speaker each when the
        share is above zero).
    seed : int
        Seed of the shuffle; the result does not depend on the input order.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Raises
    ------
    PipelineError
        When too few speakers are left for training.
    """
    ordered = sorted(set(speakers))
    shuffled = [ordered[i] for i in np.random.default_rng([seed, 3]).permutation(len(ordered))]
    n_test = max(1, round(test_fraction * len(ordered))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(ordered))) if val_fraction > 0 else 0
    if len(ordered) - n_test - n_val < 1:
        raise PipelineError(
            f"only {len(ordered)} speaker(s): split.val_fraction = {val_fraction} and split.test_fraction = "
            f"{test_fraction} leave none for training; expected more speakers or smaller fractions"
        )
    return {
        "test": sorted(shuffled[:n_test]),
        "val": sorted(shuffled[n_test:n_test + n_val]),
        "train": sorted(shuffled[n_test + n_val:]),
    }


def take_split(speakers: np.ndarray, digits: np.ndarray, takes: np.ndarray, *, fraction: float) -> np.ndarray:
    """Deal every speaker's takes of every digit into train, validation and test, by take number.

    The split of the digit judge, which needs to hear every speaker: within
    each (speaker, digit) group, the lowest-numbered ``fraction`` of the takes
    test it, the next ``fraction`` stop its training early, the rest train it
    (FSDD's own split holds out takes 0-4 of 50 in the same way). A group of
    two takes gives one to test and one to train; a single take trains.

    Parameters
    ----------
    speakers, digits, takes : numpy.ndarray
        One entry per clip.
    fraction : float
        Share of each group's takes held out for test, and again for validation
        (at least one each when the group is large enough).

    Returns
    -------
    numpy.ndarray
        One of ``'train'``, ``'val'``, ``'test'`` per clip.
    """
    roles = np.full(len(takes), "train", dtype="<U5")
    groups: dict[tuple[str, int], list[int]] = {}
    for index, key in enumerate(zip(np.asarray(speakers).tolist(), np.asarray(digits).tolist())):
        groups.setdefault(key, []).append(index)
    for members in groups.values():
        ordered = sorted(members, key=lambda i: (int(takes[i]), i))
        wanted = max(1, round(fraction * len(ordered)))
        n_test = min(wanted, len(ordered) - 1)  # at least one take always trains
        n_val = min(wanted, len(ordered) - 1 - n_test)
        for i in ordered[:n_test]:
            roles[i] = "test"
        for i in ordered[n_test:n_test + n_val]:
            roles[i] = "val"
    return roles


def fit_min_max(mels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-bin minimum and maximum over clips and frames.

    Parameters
    ----------
    mels : numpy.ndarray
        clips x n_mels x frames.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        float32 arrays of length n_mels.
    """
    return mels.min(axis=(0, 2)).astype(np.float32), mels.max(axis=(0, 2)).astype(np.float32)


def scale(mels: np.ndarray, mel_min: np.ndarray, mel_max: np.ndarray) -> np.ndarray:
    """Map dB values into [0, 1] with the training statistics (clipping outside values)."""
    span = np.maximum(mel_max - mel_min, 1e-6)[None, :, None]
    return np.clip((np.asarray(mels, dtype=np.float32) - mel_min[None, :, None]) / span, 0.0, 1.0).astype(np.float32)


def denormalize(images: np.ndarray, mel_min: np.ndarray, mel_max: np.ndarray) -> np.ndarray:
    """Undo :func:`scale`: images in [0, 1] back to dB."""
    span = np.maximum(mel_max - mel_min, 1e-6)[None, :, None]
    return (np.asarray(images, dtype=np.float32) * span + mel_min[None, :, None]).astype(np.float32)


def normalize(features_dir: Path, out_dir: Path, *, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """Split the extracted features by speaker, scale them, write each split as a folder of arrays.

    Each split is a folder of ``.npy`` files (plain arrays, byte-identical from
    run to run): ``x`` (float32 clips x n_mels x frames in [0, 1]), ``digit``
    (int), ``speaker`` (str), ``gender`` (str) and ``age`` (int, -1 when
    unknown) and ``take`` (int, from the file name). ``stats.json`` holds ``mel_min`` and ``mel_max`` (dB per mel bin,
    from the training split); ``split.json`` lists the speakers of each split.

    Returns
    -------
    dict
        Clip and speaker counts per split.
    """
    mels, clips = read_features(features_dir)
    speakers = np.array([clip["speaker"] for clip in clips])
    split = split_speakers(sorted(set(speakers)), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    masks = {name: np.isin(speakers, split[name]) for name in SPLITS}
    mel_min, mel_max = fit_min_max(mels[np.flatnonzero(masks["train"])])
    summary = {"clips": {}, "speakers": {name: len(split[name]) for name in SPLITS}}
    with atomic_dir(out_dir) as tmp:
        for name in SPLITS:
            index = np.flatnonzero(masks[name])
            rows = [clips[i] for i in index]
            arrays = {
                "x": scale(mels[index], mel_min, mel_max) if len(index) else np.zeros((0, *mels.shape[1:]), np.float32),
                "digit": np.array([r["digit"] for r in rows], dtype=np.int64),
                "speaker": np.array([r["speaker"] for r in rows], dtype=str),
                "take": np.array([r["take"] for r in rows], dtype=np.int64),
                "gender": np.array([r["gender"] for r in rows], dtype=str),
                "age": np.array([-1 if r["age"] is None else r["age"] for r in rows], dtype=np.int64),
            }
            (tmp / name).mkdir()
            for key, array in arrays.items():
                np.save(tmp / name / f"{key}.npy", array, allow_pickle=False)
            summary["clips"][name] = int(len(index))
        stats = {"mel_min": mel_min.tolist(), "mel_max": mel_max.tolist()}
        (tmp / STATS_JSON).write_text(json.dumps(stats) + "\n", encoding="utf-8")
        (tmp / SPLIT_JSON).write_text(json.dumps(split, indent=2) + "\n", encoding="utf-8")
    return summary


def load_split(normalized_dir: Path, name: str) -> dict[str, np.ndarray]:
    """Read one split written by :func:`normalize`: ``x`` and the labels."""
    folder = Path(normalized_dir) / name
    try:
        return {key: np.load(folder / f"{key}.npy", allow_pickle=False) for key in ("x", *LABELS)}
    except FileNotFoundError as err:
        raise PipelineError(f"{err.filename}: not found; run the normalize stage first") from None


def load_stats(normalized_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training split's per-bin ``(mel_min, mel_max)`` in dB."""
    stats = read_stage_json(Path(normalized_dir) / STATS_JSON, "normalize")
    return np.array(stats["mel_min"], dtype=np.float32), np.array(stats["mel_max"], dtype=np.float32)
