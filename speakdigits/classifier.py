"""The original work's other models: classifiers of the spoken digit, the
speaker's gender and the speaker's age bracket, from normalised mels.

One small CNN per task. Gender and age are speaker properties, so their
classifiers train on the speaker-disjoint training split, stop early on the
validation speakers and are measured on the test speakers. The digit
classifier is the judge of the generated voices (:mod:`speakdigits.judge`),
and a judge must be right before it grades anything: it hears every speaker,
with the lowest-numbered takes of each speaker and digit held out to test it
(:func:`take_split`, as FSDD's own split does). With
four or five training speakers, a speaker-disjoint digit classifier is wrong
one time in three on real recordings; one that has heard each speaker is
right on nearly every unheard take. Its penultimate layer, ``embedding``, is
the feature space of the Fréchet distance.

A task is trained only where the data can support it: the training and test
splits must each hold clips of at least two classes with known labels
(AudioMNIST has gender and age for every speaker; a folder of clips without
metadata has neither). Otherwise :func:`task_availability` says why not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from speakdigits.files import atomic_dir
from speakdigits.formats.classifiers import EMBEDDING, save_classifiers
from speakdigits.formats.normalized import SPLITS, load_split
from speakdigits.params import ClassifyParams
from speakdigits.runtime import make_deterministic

TASKS = ("digit", "gender", "age")
GENDERS = ("female", "male")
#: The original's seven age brackets, inclusive; ages outside them are dropped.
AGE_BRACKETS = ((10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 89))
CLASSES = {
    "digit": tuple(str(d) for d in range(10)),
    "gender": GENDERS,
    "age": tuple(f"{low}-{high}" for low, high in AGE_BRACKETS),
}


@dataclass(frozen=True)
class Verdicts:
    """What a classifier (a digit judge, the speaker or gender judge) heard in a list of wav files.

    Parameters
    ----------
    probs : numpy.ndarray
        ``heard x classes`` probabilities of the clips it could hear.
    judged : list of int
        Their indices into the list of wavs.
    problems : list of str or None
        Per wav: None, or why it could not be heard (unreadable, silent).
    embeddings : numpy.ndarray, optional
        The log-mel judge's embeddings of the heard clips (the Fréchet distance's features).
    mels_db : list of numpy.ndarray or None, optional
        The log-mel judge's images of every wav (None where it could not hear it).
    """

    probs: np.ndarray
    judged: list[int]
    problems: list[str | None]
    embeddings: np.ndarray | None = None
    mels_db: list[np.ndarray | None] | None = None

    def per_clip(self) -> tuple[np.ndarray, np.ndarray]:
        """Per wav: the verdict (-1 where it could not be heard) and its confidence (0 there)."""
        count = len(self.problems)
        verdicts, confidence = np.full(count, -1), np.zeros(count)
        if len(self.judged):
            verdicts[self.judged] = self.probs.argmax(axis=1)
            confidence[self.judged] = self.probs.max(axis=1)
        return verdicts, confidence

    def accuracy(self, expected: list[int]) -> float | None:
        """Accuracy over every wav, one that could not be heard counting as wrong; None for no wav."""
        if not len(expected):
            return None
        return float(np.mean(self.per_clip()[0] == np.asarray(expected)))


def age_bracket(age: int) -> int:
    """Index into :data:`AGE_BRACKETS` of ``age``, or -1 when unknown (-1) or outside every bracket."""
    for index, (low, high) in enumerate(AGE_BRACKETS):
        if low <= age <= high:
            return index
    return -1


def task_labels(split: dict[str, np.ndarray], task: str) -> np.ndarray:
    """Class index of every clip of a split for one task; -1 where the label is unknown.

    Parameters
    ----------
    split : dict
        A split as read by :func:`speakdigits.formats.normalized.load_split`.
    task : {'digit', 'gender', 'age'}
        Which label.

    Returns
    -------
    numpy.ndarray
        int64, one entry per clip, indexing ``CLASSES[task]``.
    """
    if task == "digit":
        return np.asarray(split["digit"], dtype=np.int64)
    if task == "gender":
        return np.array([GENDERS.index(g) if g in GENDERS else -1 for g in split["gender"]], dtype=np.int64)
    if task == "age":
        return np.array([age_bracket(int(a)) for a in split["age"]], dtype=np.int64)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


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
        for i in ordered[n_test : n_test + n_val]:
            roles[i] = "val"
    return roles


def judge_splits(splits: dict[str, dict], *, holdout_takes: float) -> dict[str, dict]:
    """The digit judge's splits: every speaker's clips, dealt by take (:func:`take_split`).

    Parameters
    ----------
    splits : dict
        The speaker-disjoint ``train``, ``val`` and ``test`` splits of
        :func:`speakdigits.formats.normalized.load_split`.
    holdout_takes : float
        ``classify.holdout_takes``: share of each speaker's takes of each digit
        held out to test the judge, and again to stop its training early.

    Returns
    -------
    dict
        ``{"train": ..., "val": ..., "test": ...}`` with the same arrays as
        the input splits.
    """
    merged = {key: np.concatenate([splits[name][key] for name in SPLITS]) for key in splits["train"]}
    roles = take_split(merged["speaker"], merged["digit"], merged["take"], fraction=holdout_takes)
    return {name: {key: values[roles == name] for key, values in merged.items()} for name in SPLITS}


def task_availability(splits: dict[str, dict], task: str) -> tuple[bool, str]:
    """Whether ``task`` can be trained and tested on these splits, and if not, why.

    Returns
    -------
    (bool, str)
        ``(True, "")``, or ``(False, reason)`` with a one-line reason naming
        the split and what it holds.
    """
    what = {"digit": "digit", "gender": "gender", "age": "age bracket"}[task]
    for name in ("train", "test"):
        labels = task_labels(splits[name], task)
        known = sorted(set(labels[labels >= 0].tolist()))
        if len(labels) == 0:
            return False, f"{name} split is empty"
        if not known:
            return False, f"no {name} clip has a known {what} (not in the data set's metadata)"
        if len(known) == 1:
            return False, (
                f"all {name} clips with a known {what} are of one class ({CLASSES[task][known[0]]}); need at least 2"
            )
    return True, ""


def build_classifier(shape: tuple[int, int], n_classes: int, *, name: str) -> keras.Model:
    """A small CNN from a normalised mel image to class probabilities.

    Three blocks of 3x3 convolution (ReLU) and 2x2 max pooling (16, 32, 64
    channels), a fourth convolution of 128 channels and a global max pool,
    then a dense ``embedding`` layer of 64 units (the judge's feature space)
    and a softmax, with dropout before and after the embedding. The global
    pool makes the verdict depend on what is said, not on where in the image
    it sits, and keeps the judge steady on audio that went through
    Griffin-Lim: on FSDD's held-out takes after the pipeline's mel →
    Griffin-Lim round trip it was right on 98 % where the same network with a
    flattened last layer managed 96 %. Any input shape works. No batch
    normalisation: with ~20 batches an epoch its moving statistics lag so far
    behind that validation accuracy stays at chance for many epochs, and
    early stopping then keeps a useless model.

    Parameters
    ----------
    shape : (int, int)
        ``(n_mels, frames)``.
    n_classes : int
        Width of the softmax.
    name : str
        The model's name (the task).
    """
    image = keras.Input((*shape, 1), name="image")
    h = image
    for i, channels in enumerate((16, 32, 64)):
        h = layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"conv{i + 1}")(h)
        h = layers.MaxPooling2D(2, padding="same", name=f"pool{i + 1}")(h)
    h = layers.Conv2D(128, 3, padding="same", activation="relu", name="conv4")(h)
    h = layers.GlobalMaxPooling2D(name="global_pool")(h)
    h = layers.Dropout(0.3, name="dropout_features")(h)
    h = layers.Dense(64, activation="relu", name=EMBEDDING)(h)
    h = layers.Dropout(0.3, name="dropout_embedding")(h)
    probs = layers.Dense(n_classes, activation="softmax", name="probs")(h)
    return keras.Model(image, probs, name=name)


def _known(split: dict, task: str) -> tuple[np.ndarray, np.ndarray]:
    labels = task_labels(split, task)
    keep = labels >= 0
    return split["x"][keep][..., None].astype(np.float32), labels[keep]


def train_task(splits: dict[str, dict], task: str, *, classify: ClassifyParams, seed: int) -> tuple[keras.Model, dict]:
    """Train one classifier and measure it on the test speakers.

    Early stopping watches the validation loss (the training loss when the
    validation split has no labelled clip) and restores the best weights.

    Parameters
    ----------
    splits : dict
        ``{"train": ..., "val": ..., "test": ...}`` as read by
        :func:`speakdigits.formats.normalized.load_split`; the task must be available
        (:func:`task_availability`).
    task : {'digit', 'gender', 'age'}
        Which label.
    classify : ClassifyParams
        ``epochs``, ``batch_size``, ``learning_rate`` and ``patience``.
    seed : int
        Seed of initialisation and shuffling.

    Returns
    -------
    model : keras.Model
        The trained classifier.
    report : dict
        ``test_accuracy``, ``test_speakers``, ``majority_baseline`` (accuracy of always saying the
        test split's most common class), clip counts, ``epochs_run`` and
        ``confusion``: one ``{"actual", "predicted"}`` record per test clip.
    """
    make_deterministic(seed)
    x_train, y_train = _known(splits["train"], task)
    x_val, y_val = _known(splits["val"], task)
    x_test, y_test = _known(splits["test"], task)
    classes = CLASSES[task]
    model = build_classifier(x_train.shape[1:3], len(classes), name=task)
    model.compile(
        optimizer=keras.optimizers.Adam(classify.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    has_val = len(y_val) > 0
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss" if has_val else "loss", patience=classify.patience, restore_best_weights=True
    )
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val) if has_val else None,
        epochs=classify.epochs,
        batch_size=classify.batch_size,
        shuffle=True,
        callbacks=[stop],
        verbose=2,
    )
    predicted = predict_probs(model, x_test[..., 0], batch_size=classify.batch_size).argmax(axis=1)
    counts = np.bincount(y_test, minlength=len(classes))
    report = {
        "test_accuracy": float(np.mean(predicted == y_test)),
        "majority_baseline": float(counts.max() / counts.sum()),
        "train_clips": int(len(y_train)),
        "val_clips": int(len(y_val)),
        "test_clips": int(len(y_test)),
        "test_speakers": int(len(set(splits["test"]["speaker"][task_labels(splits["test"], task) >= 0].tolist()))),
        "epochs_run": len(history.epoch),
        "confusion": [{"actual": classes[a], "predicted": classes[p]} for a, p in zip(y_test, predicted)],
    }
    return model, report


def predict_probs(model: keras.Model, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (clips x classes) of normalised mel images (clips x n_mels x frames)."""
    x = np.asarray(images, dtype=np.float32)[..., None]
    if len(x) == 0:
        return np.zeros((0, model.output.shape[-1]), dtype=np.float32)
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


def train_classifiers(
    normalized_dir: Path, out_dir: Path, *, classify: ClassifyParams, seed: int
) -> tuple[dict, dict[str, list[dict]]]:
    """Train every available task and write the models.

    Parameters
    ----------
    normalized_dir : Path
        Output of the normalize stage.
    out_dir : Path
        Written atomically: ``<task>.keras`` per trained task and
        ``classifiers.json``.
    classify : ClassifyParams
        The ``classify`` section of params.yaml.
    seed : int
        Seed of every task (each starts from it, whatever ran before).

    Returns
    -------
    metrics : dict
        Per task: ``available``, ``held_out`` (how its test clips were
        held out) and either the report of :func:`train_task` (without the
        confusion records) or ``reason``.
    confusion : dict
        Per trained task, the test clips' ``{"actual", "predicted"}`` records.
    """
    splits = {name: load_split(normalized_dir, name) for name in SPLITS}
    holdout_takes = classify.holdout_takes
    by_take = judge_splits(splits, holdout_takes=holdout_takes)
    metrics, confusion, models = {}, {}, {}
    for task in TASKS:
        task_splits = by_take if task == "digit" else splits
        held_out = (
            f"takes: the lowest-numbered {100 * holdout_takes:g} % of every speaker's takes of each digit"
            if task == "digit"
            else "speakers: the test speakers of the normalize stage"
        )
        available, reason = task_availability(task_splits, task)
        if not available:
            metrics[task] = {"available": False, "held_out": held_out, "reason": reason}
            continue
        print(f"classify: {task}: training")
        models[task], report = train_task(task_splits, task, classify=classify, seed=seed)
        confusion[task] = report.pop("confusion")
        metrics[task] = {"available": True, "held_out": held_out, **report}
    with atomic_dir(out_dir) as tmp:
        save_classifiers(
            tmp,
            models,
            tuple(splits["train"]["x"].shape[1:]),
            holdout_takes=holdout_takes,
            classes=CLASSES,
            test_accuracy={task: metrics[task]["test_accuracy"] for task in models},
        )
    return metrics, confusion
