"""The second digit judge: it hears clips through a front end of its own, never the VAE's features;
and the speaker judge, which hears whose voice a clip is in.

The first judge (:mod:`speakdigits.classifier`) reads the pipeline's own
log-mel images, the VAE's feature space: it hears what is typical there, and
rated generated clips above real recordings. This one starts from the audio:

- the front end (:func:`speakdigits.mfcc.front_end`): MFCCs of the clip at
  16 kHz, trimmed by librosa, not by the pipeline, each coefficient's mean and
  spread over the clip removed;
- the network (:func:`build_judge`): three 1-D convolutions over time, a
  global max pool (what is said matters, not exactly where), a 64-unit
  ``embedding`` and a softmax.

It is trained on real recordings only, straight from the raw clips, every
speaker, with each speaker's lowest-numbered takes held out to test it (the
digit judge's split, :func:`speakdigits.classifier.take_split`).

The speaker judge is the same network trained the same way to name the
speaker, on the same MFCCs with their means and spreads kept, where a voice's
timbre lies (scaled by the training clips' statistics, inside the network).
A speaker judge on the pipeline's log-mel images was tried first: it named the
FSDD test speaker in every recording but in only a quarter of the same
recordings rebuilt by the vocoder, so it could not have told whether a
generated clip kept a voice; this one names them in both.

The gender judge is the speaker judge's network trained to name the gender
(from the data's speaker metadata), held out by speaker as the classify
stage's gender judge is: it learns from the normalize stage's training
speakers, stops on its validation speakers and is tested on its test speakers,
whose conversions it judges. The classify stage's gender judge, on the log-mel
images, named the synthetic test men as men at 50 to 56 % confidence in their
own recordings and heard three of speaker 16's five rebuilt by the vocoder
as a woman's; this one names them at 84 and 95 % confidence on average, and
19 of the 20 source clips rebuilt by the vocoder (docs/results.md).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np
from keras import layers

from speakdigits.classifier import CLASSES, Verdicts, take_split
from speakdigits.errors import PipelineError
from speakdigits.files import atomic_dir
from speakdigits.formats import raw
from speakdigits.formats.classifiers import EMBEDDING
from speakdigits.formats.mfcc_judge import DIGIT, GENDER, SPEAKER, load_judge, save_judge
from speakdigits.mfcc import FRAMES, N_MFCC, hear, per_clip_normalised
from speakdigits.params import ClassifyParams, SplitParams
from speakdigits.runtime import make_deterministic
from speakdigits.speakers import clean_speaker_metadata, split_speakers


def build_judge(n_classes: int = len(CLASSES["digit"]), *, standardise: np.ndarray | None = None) -> keras.Model:
    """The network: MFCC frames to class probabilities (see the module docstring). ``standardise``: clips
    whose per-coefficient mean and spread the network first removes (its first layer, adapted to them)."""
    mfcc = keras.Input((FRAMES, N_MFCC), name="mfcc")
    h = mfcc
    if standardise is not None:
        scaling = layers.Normalization(axis=-1, name="standardise")
        scaling.adapt(np.asarray(standardise, np.float32).reshape(-1, N_MFCC))
        h = scaling(h)
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


def train_judge(raw_dir: Path, out_dir: Path, *, classify: ClassifyParams, split: SplitParams, seed: int) -> dict:
    """Train the digit judge, the speaker judge and the gender judge on the raw recordings and write them to
    ``out_dir`` (:mod:`speakdigits.formats.mfcc_judge`).

    Parameters
    ----------
    raw_dir : Path
        Output of the download stage.
    out_dir : Path
        Written atomically.
    classify : ClassifyParams
        The judges' training settings and ``holdout_takes``, the share of
        every speaker's takes of each digit held out to test them.
    split : SplitParams
        The normalize stage's split of the speakers, which the gender judge is held out by
        (:func:`speakdigits.speakers.split_speakers`).
    seed : int
        Seed of initialisation and shuffling (each judge starts from it).

    Returns
    -------
    dict
        The digit judge's ``test_accuracy`` (on the held-out takes), clip counts, ``epochs_run`` and
        ``held_out``; and ``speaker``: the same of the speaker judge, with ``speakers``, or
        ``available: false`` and why; ``gender``: the same of the gender judge (:func:`gender_judge`).
    """
    wavs, digits, speakers, takes = raw_clips(raw_dir)
    heard = hear(wavs)
    usable = np.array([not isinstance(h, str) for h in heard], dtype=bool)
    if not usable.any():
        raise PipelineError(f"{raw_dir}: no clip could be heard by the MFCC judge")
    x = np.stack([h for h in heard if not isinstance(h, str)])
    digits, speakers, takes = digits[usable], speakers[usable], takes[usable]
    roles = take_split(speakers, digits, takes, fraction=classify.holdout_takes)
    held_out = f"takes: the lowest-numbered {100 * classify.holdout_takes:g} % of every speaker's takes of each digit"
    names = tuple(sorted(set(speakers.tolist())))
    with atomic_dir(out_dir) as tmp:
        model, metrics = train_one(per_clip_normalised(x), digits, roles, n_classes=10, classify=classify, seed=seed)
        metrics |= {"unheard_files": int((~usable).sum()), "held_out": held_out}
        save_judge(
            tmp,
            model,
            name=DIGIT,
            classes=CLASSES["digit"],
            test_accuracy=metrics["test_accuracy"],
            holdout_takes=classify.holdout_takes,
            per_clip_normalised=True,
        )
        if len(names) < 2:
            metrics["speaker"] = {"available": False, "reason": f"one speaker only ({names[0]}): nobody to tell apart"}
            metrics["gender"] = {"available": False, "reason": "one speaker only: no speakers to hold out"}
            return metrics
        print("mfcc_judge: the speaker judge")
        who = np.array([names.index(name) for name in speakers.tolist()], dtype=np.int64)
        model, report = train_one(x, who, roles, n_classes=len(names), classify=classify, seed=seed, standardise=True)
        metrics["speaker"] = {"available": True, "speakers": len(names), "held_out": held_out, **report}
        save_judge(
            tmp,
            model,
            name=SPEAKER,
            classes=names,
            test_accuracy=report["test_accuracy"],
            holdout_takes=classify.holdout_takes,
            per_clip_normalised=False,
        )
        metrics["gender"] = gender_judge(
            tmp, x, speakers, raw.read_speakers(raw_dir), classify=classify, split=split, seed=seed
        )
    return metrics


def gender_judge(
    out_dir: Path,
    x: np.ndarray,
    speakers: np.ndarray,
    metadata: dict,
    *,
    classify: ClassifyParams,
    split: SplitParams,
    seed: int,
) -> dict:
    """Train the gender judge on front-end outputs ``x`` (one per clip of ``speakers``) and save it in
    ``out_dir``, held out by the normalize stage's split of the speakers (``split``, ``seed``); ``metadata``,
    the raw data's speaker metadata. Clips of speakers of unknown gender are left out. Returns its
    ``test_accuracy``, clip counts, ``epochs_run``, ``held_out`` and ``test_speakers``, or ``available:
    false`` and why (fewer than two known genders among the training speakers, or among the test speakers)."""
    names = sorted(set(speakers.tolist()))
    genders = {name: entry["gender"] for name, entry in clean_speaker_metadata(metadata, names)[0].items()}
    try:
        roles_of = {
            name: role for role, group in split_speakers(names, split=split, seed=seed).items() for name in group
        }
    except PipelineError as err:
        return {"available": False, "reason": str(err)}
    classes = tuple(sorted({genders[name] for name in names if roles_of[name] == "train"} - {"unknown"}))
    test_speakers = sorted(name for name in names if roles_of[name] == "test" and genders[name] in classes)
    tested = sorted({genders[name] for name in test_speakers})
    # As the classify stage's: a test of one gender cannot tell a judge from one that always names it.
    if len(classes) < 2 or len(tested) < 2:
        reason = (
            "the training speakers are of one known gender"
            if len(classes) < 2
            else f"the test speakers with a known gender are of one ({', '.join(tested) or 'none'})"
        )
        return {"available": False, "reason": reason}
    known = np.array([genders[name] in classes for name in speakers.tolist()], dtype=bool)
    print("mfcc_judge: the gender judge")
    labels = np.array([classes.index(genders[name]) for name in speakers[known].tolist()], dtype=np.int64)
    roles = np.array([roles_of[name] for name in speakers[known].tolist()])
    model, report = train_one(
        x[known], labels, roles, n_classes=len(classes), classify=classify, seed=seed, standardise=True
    )
    save_judge(
        out_dir,
        model,
        name=GENDER,
        classes=classes,
        test_accuracy=report["test_accuracy"],
        holdout_takes=classify.holdout_takes,
        per_clip_normalised=False,
        test_speakers=test_speakers,
    )
    held_out = "speakers: the test speakers of the normalize stage"
    return {"available": True, "held_out": held_out, "test_speakers": test_speakers, **report}


def train_one(
    x: np.ndarray,
    labels: np.ndarray,
    roles: np.ndarray,
    *,
    n_classes: int,
    classify: ClassifyParams,
    seed: int,
    standardise: bool = False,
) -> tuple[keras.Model, dict]:
    """One judge on front-end outputs ``x`` (clips x FRAMES x N_MFCC), trained on the clips whose role
    (:func:`speakdigits.classifier.take_split`) is ``train``, stopped early on ``val``, tested on ``test``."""
    part = {role: roles == role for role in ("train", "val", "test")}
    make_deterministic(seed)
    model = build_judge(n_classes, standardise=x[part["train"]] if standardise else None)
    model.compile(
        optimizer=keras.optimizers.Adam(classify.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    has_val = bool(part["val"].any())
    history = model.fit(
        x[part["train"]],
        labels[part["train"]],
        validation_data=(x[part["val"]], labels[part["val"]]) if has_val else None,
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
    actual = labels[part["test"]]
    return model, {
        "test_accuracy": float(np.mean(predicted == actual)) if len(actual) else None,
        "train_clips": int(part["train"].sum()),
        "val_clips": int(part["val"].sum()),
        "test_clips": int(part["test"].sum()),
        "epochs_run": len(history.epoch),
    }


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Class probabilities of front-end outputs (clips x FRAMES x N_MFCC)."""
    if len(x) == 0:
        return np.zeros((0, model.output.shape[-1]))
    # Direct calls, not predict(): predict traces a new graph for every new batch shape, and the
    # evaluate stage asks about many small sets of different sizes.
    x = np.asarray(x, np.float32)
    parts = [keras.ops.convert_to_numpy(model(x[i : i + 256], training=False)) for i in range(0, len(x), 256)]
    return np.concatenate(parts).astype(np.float64)


class MfccJudge:
    """A trained judge of this module, answering probabilities for wav files.

    Parameters
    ----------
    model : keras.Model
        From :func:`build_judge`, trained.
    classes : list of str
        Its class names.
    per_clip_normalised : bool
        Whether it hears MFCCs with each clip's means and spreads removed (the digit judge) or as they are.
    task : str
        What it tells apart (``digit``, ``speaker``).
    """

    def __init__(
        self, model: keras.Model, classes: list[str], *, per_clip_normalised: bool = True, task: str = "digit"
    ):
        self.model, self.classes = model, list(classes)
        self.per_clip_normalised, self.task = per_clip_normalised, task

    @classmethod
    def load(cls, judge_dir: Path, name: str = DIGIT) -> MfccJudge:
        """The digit judge (``name``: ``judge``), the speaker judge (``speaker``) or the gender judge (``gender``) of
        the mfcc_judge stage."""
        model, info = load_judge(judge_dir, name)
        task = "digit" if name == DIGIT else name
        return cls(model, info["classes"], per_clip_normalised=info.get("per_clip_normalised", True), task=task)

    def wavs(self, clips: list[bytes]) -> Verdicts:
        """Judge wav files, from their MFCCs."""
        heard = hear(clips)
        judged = [i for i, h in enumerate(heard) if not isinstance(h, str)]
        x = np.stack([heard[i] for i in judged]) if judged else np.zeros((0, FRAMES, N_MFCC), np.float32)
        return Verdicts(
            predict(self.model, per_clip_normalised(x) if self.per_clip_normalised else x),
            judged,
            [h if isinstance(h, str) else None for h in heard],
        )
