"""The ``normalize`` stage: speaker-disjoint splits and train-only min/max scaling.

The original notebook fitted min/max on all the data, test set included; here
the statistics come from the training speakers only, and are saved so that
generated spectrograms can be mapped back to dB
(:func:`speakdigits.formats.normalized.denormalize`). What it
writes, and how to read it back: :mod:`speakdigits.formats.normalized`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speakdigits.files import atomic_dir
from speakdigits.formats.features import read_features, read_geometry
from speakdigits.formats.normalized import SPLITS, scale, write_split, write_stats
from speakdigits.params import SplitParams
from speakdigits.pitch import to_unit
from speakdigits.speakers import split_speakers


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


def normalize(features_dir: Path, out_dir: Path, *, split: SplitParams, seed: int) -> dict:
    """Split the extracted features by speaker, scale them, write each split as a folder of arrays
    (:mod:`speakdigits.formats.normalized`).

    Returns
    -------
    dict
        Clip and speaker counts per split.
    """
    mels, pitch, clips = read_features(features_dir)
    speakers = np.array([clip["speaker"] for clip in clips])
    speakers_of = split_speakers(sorted(set(speakers)), split=split, seed=seed)
    masks = {name: np.isin(speakers, speakers_of[name]) for name in SPLITS}
    mel_min, mel_max = fit_min_max(mels[np.flatnonzero(masks["train"])])
    summary = {"clips": {}, "speakers": {name: len(speakers_of[name]) for name in SPLITS}}
    with atomic_dir(out_dir) as tmp:
        for name in SPLITS:
            index = np.flatnonzero(masks[name])
            rows = [clips[i] for i in index]
            arrays = {
                "x": scale(mels[index], mel_min, mel_max) if len(index) else np.zeros((0, *mels.shape[1:]), np.float32),
                "pitch": to_unit(pitch[index]) if len(index) else np.zeros((0, *pitch.shape[1:]), np.float32),
                "digit": np.array([r["digit"] for r in rows], dtype=np.int64),
                "speaker": np.array([r["speaker"] for r in rows], dtype=str),
                "take": np.array([r["take"] for r in rows], dtype=np.int64),
                "gender": np.array([r["gender"] for r in rows], dtype=str),
                "age": np.array([-1 if r["age"] is None else r["age"] for r in rows], dtype=np.int64),
            }
            write_split(tmp, name, arrays)
            summary["clips"][name] = int(len(index))
        write_stats(tmp, mel_min=mel_min, mel_max=mel_max, speakers=speakers_of, geometry=read_geometry(features_dir))
    return summary
