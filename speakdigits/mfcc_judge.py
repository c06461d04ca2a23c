"""The second digit judge: it hears clips through a front end of its own, never the VAE's features.

The first judge (:mod:`speakdigits.classifier`) reads the pipeline's own
log-mel images, the VAE's feature space: it hears what is typical there, and
rated generated clips above real recordings. This one starts from the audio:

- the front end (:func:`speakdigits.mfcc.front_end`): MFCCs of the clip at
  16 kHz, trimmed by librosa, not by the pipeline;
- the network (:func:`build_judge`): three 1-D convolutions over time, a
  global max pool (what is said matters, not exactly where), a 64-unit
  ``embedding`` and a softmax.

It is trained on real recordings only, straight from the raw clips, every
speaker, with each speaker's lowest-numbered takes held out to test it (the
digit judge's split, :func:`speakdigits.classifier.take_split`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np
from keras import layers

from speakdigits.classifier import CLASSES, take_split
from speakdigits.errors import PipelineError
from speakdigits.files import atomic_dir
from speakdigits.formats import raw
from speakdigits.formats.classifiers import EMBEDDING
from speakdigits.formats.mfcc_judge import save_judge
from speakdigits.mfcc import FRAMES, N_MFCC, hear
from speakdigits.params import ClassifyParams
from speakdigits.runtime import make_deterministic


def build_judge(n_classes: int = len(CLASSES["digit"])) -> keras.Model:
    """The network: MFCC frames to digit probabilities (see the module docstring)."""
    mfcc = keras.Input((FRAMES, N_MFCC), name="mfcc")
    h = mfcc
    for i, (channels, width) in enumerate(((64, 5), (128, 5), (128, 3))):
        h = layers.Conv1D(channels, width, padding="same", activation="relu", name=f"conv{i + 1}")(h)
        if i < 2:
            h = layers.MaxPooling1D(2, padding="same", name=f"pool{i + 1}")(h)
    h = layers.GlobalMaxPooling1D(name="global_pool")(h)
    h = layers.Dropout(0.3, name="dropout_features")(h)
    h = layers.Dense(64, activation="relu", name=EMBEDDING)(h)
    h = layers.Dropout(0.3, name="dropout_embedding")(h)
    return keras.Model(mfcc, layers.Dense(n_classes, activation="softmax", name="probs")(h), name="mfcc_judge")


def raw_clips(raw_dir: Path) -> tuple[list[bytes], np.ndarray, np.ndarray, np.ndarray]:
    """Every clip of the raw data set with a clip name: its bytes, digit, speaker and take."""
    wavs, digits, speakers, takes = [], [], [], []
    with zipfile.ZipFile(Path(raw_dir) / raw.AUDIO_ZIP) as archive:
        for name in raw.clip_names(raw_dir):
            parsed = raw.parse_clip_name(name)
            if parsed is None:
                continue
            wavs.append(archive.read(name))
            digits.append(parsed[0])
            speakers.append(parsed[1])
            takes.append(parsed[2])
    return wavs, np.array(digits, dtype=np.int64), np.array(speakers, dtype=str), np.array(takes, dtype=np.int64)


def train_judge(raw_dir: Path, out_dir: Path, *, classify: ClassifyParams, seed: int) -> dict:
    """Train the judge on the raw recordings and write it to ``out_dir`` (:mod:`speakdigits.formats.mfcc_judge`).

    Parameters
    ----------
    raw_dir : Path
        Output of the download stage.
    out_dir : Path
        Written atomically.
    classify : ClassifyParams
        The judges' training settings and ``holdout_takes``, the share of
        every speaker's takes of each digit held out to test it.
    seed : int
        Seed of initialisation and shuffling.

    Returns
    -------
    dict
        ``test_accuracy`` (on the held-out takes), clip counts, ``epochs_run``, ``held_out``.
    """
    wavs, digits, speakers, takes = raw_clips(raw_dir)
    heard = hear(wavs)
    usable = np.array([not isinstance(h, str) for h in heard], dtype=bool)
    if not usable.any():
        raise PipelineError(f"{raw_dir}: no clip could be heard by the MFCC judge")
    x = np.stack([h for h in heard if not isinstance(h, str)])
    digits, speakers, takes = digits[usable], speakers[usable], takes[usable]
    roles = take_split(speakers, digits, takes, fraction=classify.holdout_takes)
    part = {role: roles == role for role in ("train", "val", "test")}
    make_deterministic(seed)
    model = build_judge()
    model.compile(
        optimizer=keras.optimizers.Adam(classify.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    has_val = bool(part["val"].any())
    history = model.fit(
        x[part["train"]],
        digits[part["train"]],
        validation_data=(x[part["val"]], digits[part["val"]]) if has_val else None,
        epochs=classify.epochs,
        batch_size=classify.batch_size,
        shuffle=True,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if has_val else "loss", patience=classify.patience, restore_best_weights=True
            )
        ],
        verbose=2,
    )
    predicted = predict(model, x[part["test"]]).argmax(axis=1)
    actual = digits[part["test"]]
    accuracy = float(np.mean(predicted == actual)) if len(actual) else None
    metrics = {
        "test_accuracy": accuracy,
        "train_clips": int(part["train"].sum()),
        "val_clips": int(part["val"].sum()),
        "test_clips": int(part["test"].sum()),
        "unheard_files": int((~usable).sum()),
        "epochs_run": len(history.epoch),
        "held_out": f"takes: the lowest-numbered {100 * classify.holdout_takes:g} % of every speaker's takes "
        "of each digit",
    }
    with atomic_dir(out_dir) as tmp:
        save_judge(tmp, model, classes=CLASSES["digit"], test_accuracy=accuracy, holdout_takes=classify.holdout_takes)
    return metrics


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Class probabilities of front-end outputs (clips x FRAMES x N_MFCC)."""
    if len(x) == 0:
        return np.zeros((0, model.output.shape[-1]))
    return np.asarray(model.predict(np.asarray(x, np.float32), batch_size=256, verbose=0), dtype=np.float64)


class MfccJudge:
    """The trained judge, answering probabilities for wav files.

    Parameters
    ----------
    model : keras.Model
        From :func:`build_judge`, trained.
    classes : list of str
        Its class names.
    """

    def __init__(self, model: keras.Model, classes: list[str]):
        self.model, self.classes = model, list(classes)

    def wavs(self, wavs: list[bytes]) -> tuple[np.ndarray, list[int], list[str | None]]:
        """``(probs, judged, problems)``: probabilities of the clips that could be heard, their indices
        into ``wavs``, and for every clip None or why it could not be heard."""
        heard = hear(wavs)
        judged = [i for i, h in enumerate(heard) if not isinstance(h, str)]
        probs = predict(self.model, np.stack([heard[i] for i in judged]) if judged else np.zeros((0, FRAMES, N_MFCC)))
        return probs, judged, [h if isinstance(h, str) else None for h in heard]
