"""The digit classifier as a judge of audio: its verdicts and the metrics built on them.

The metric functions are plain NumPy on arrays of class probabilities or
embeddings, so that they can be checked on constructed cases with known
answers. :class:`Judge` applies the trained digit classifier (from the
``classify`` stage) to wav files, through the same mel pipeline as the real
clips: decode → :func:`speakdigits.audio.clip_to_mel` → scale with the
training statistics → probabilities and ``embedding`` activations.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import scipy.linalg

from speakdigits.audio import clip_to_mel
from speakdigits.classifier import Verdicts
from speakdigits.formats.classifiers import EMBEDDING, load_classifier
from speakdigits.formats.normalized import scale
from speakdigits.params import MelParams
from speakdigits.wav import BadClip

# Added to both covariances of the Fréchet distance: with fewer clips than
# embedding dimensions the covariances are singular, and their product's square
# root would pick up large imaginary parts.
FRECHET_RIDGE = 1e-6


def inception_score(probs: np.ndarray) -> float:
    """exp(E_x[KL(p(y|x) ‖ p(y))]): high when each verdict is sure and the verdicts are varied.

    Parameters
    ----------
    probs : numpy.ndarray
        clips x classes, rows summing to 1.

    Returns
    -------
    float
        Between 1 (every clip gets the same distribution) and the number of
        classes (sure verdicts spread evenly over every class).
    """
    probs = np.asarray(probs, dtype=np.float64)
    marginal = probs.mean(axis=0, keepdims=True)
    # 0 log 0 = 0: where p(y|x) is 0 the term vanishes, whatever p(y).
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * (np.log(probs) - np.log(marginal)), 0.0)
    return float(np.exp(terms.sum(axis=1).mean()))


def frechet_distance(a: np.ndarray, b: np.ndarray, *, ridge: float = FRECHET_RIDGE) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings.

    ``‖μa − μb‖² + tr(Ca + Cb − 2 (Ca Cb)^½)``, the measure behind FID.

    Parameters
    ----------
    a, b : numpy.ndarray
        n x d and m x d embeddings (n, m ≥ 1; with one row the covariance is 0).
    ridge : float
        Added to the diagonal of both covariances (see :data:`FRECHET_RIDGE`).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    dim = a.shape[1]

    def moments(x):
        cov = np.cov(x, rowvar=False) if len(x) > 1 else np.zeros((dim, dim))
        return x.mean(axis=0), np.atleast_2d(cov) + ridge * np.eye(dim)

    (mu_a, cov_a), (mu_b, cov_b) = moments(a), moments(b)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(np.real(root)))
    return max(value, 0.0)  # rounding can leave a tiny negative for identical sets


def class_histogram(probs: np.ndarray) -> list[int]:
    """How many clips the judge assigns to each class (its argmax)."""
    probs = np.asarray(probs)
    return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]).tolist() if len(probs) else [0] * probs.shape[1]


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of clips whose most probable class is their label."""
    probs = np.asarray(probs)
    return float(np.mean(probs.argmax(axis=1) == np.asarray(labels))) if len(probs) else float("nan")


def mean_confidence(probs: np.ndarray) -> float:
    """Mean probability of the judge's verdict (its largest probability) per clip."""
    probs = np.asarray(probs)
    return float(probs.max(axis=1).mean()) if len(probs) else float("nan")


def summary(probs: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """The judge's metrics for one set of clips: ``clips``, ``inception_score``,
    ``mean_confidence`` and, with labels, ``accuracy``."""
    out = {"clips": int(len(probs))}
    if len(probs):  # nothing to average over an empty set (and NaN is not JSON)
        if labels is not None:
            out["accuracy"] = accuracy(probs, labels)
        out["inception_score"] = inception_score(probs)
        out["mean_confidence"] = mean_confidence(probs)
    return out


class Judge:
    """A trained classifier of the classify stage (the digit judge unless asked for another task),
    answering probabilities and embeddings.

    Parameters
    ----------
    model : keras.Model
        A classifier from :func:`speakdigits.classifier.build_classifier`.
    classes : list of str
        Its class names.
    task : str
        What it tells apart (``digit``, ``speaker``, ``gender``, ``age``).
    mel : MelParams
        The ``mel`` section of params.yaml, to turn audio into images.
    mel_min, mel_max : numpy.ndarray
        The training statistics of :func:`speakdigits.formats.normalized.load_stats`.
    """

    def __init__(
        self,
        model: keras.Model,
        classes: list[str],
        *,
        mel: MelParams,
        mel_min: np.ndarray,
        mel_max: np.ndarray,
        task: str = "digit",
    ):
        self.classes, self.task = list(classes), task
        self.mel, self.mel_min, self.mel_max = mel, mel_min, mel_max
        # One pass gives both heads: the penultimate layer and the softmax.
        self._both = keras.Model(model.inputs[0], [model.get_layer(EMBEDDING).output, model.output])

    @classmethod
    def load(cls, classifier_dir: Path, task: str = "digit", **kwargs) -> Judge:
        """A classifier saved by the ``classify`` stage: the digit judge, or another ``task``'s."""
        model, classes = load_classifier(classifier_dir, task)
        return cls(model, classes, task=task, **kwargs)

    def images(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, embeddings)`` of normalised mel images (clips x n_mels x frames)."""
        x = np.asarray(scaled, dtype=np.float32)[..., None]
        if len(x) == 0:
            width = self._both.outputs[0].shape[-1]
            return np.zeros((0, len(self.classes))), np.zeros((0, width))
        # Direct calls, not predict(): predict traces a new graph for every new
        # batch shape, and the judge sees many small sets of different sizes.
        outputs = [self._both(x[i : i + 256], training=False) for i in range(0, len(x), 256)]
        embeddings = np.concatenate([keras.ops.convert_to_numpy(e) for e, _ in outputs])
        probs = np.concatenate([keras.ops.convert_to_numpy(p) for _, p in outputs])
        return probs.astype(np.float64), embeddings.astype(np.float64)

    def mel_db(self, wav: bytes) -> np.ndarray:
        """A wav file's log-mel image in dB, exactly as the extract stage makes it.

        Raises
        ------
        BadClip
            When the clip is unreadable or silent.
        """
        return clip_to_mel(wav, self.mel)

    def scaled(self, mels_db: np.ndarray) -> np.ndarray:
        """dB images to the classifier's [0, 1] inputs."""
        return scale(np.asarray(mels_db), self.mel_min, self.mel_max)

    def wavs(self, clips: list[bytes]) -> Verdicts:
        """Judge wav files, from their log-mel images (re-extracted as the extract stage does; in ``mels_db``)."""
        mels, problems = [], []
        for data in clips:
            try:
                mels.append(self.mel_db(data))
                problems.append(None)
            except BadClip as err:
                mels.append(None)
                problems.append(str(err))
        judged = [i for i, m in enumerate(mels) if m is not None]
        images = self.scaled(np.stack([mels[i] for i in judged])) if judged else np.zeros((0, 1, 1))
        probs, embeddings = self.images(images)
        return Verdicts(probs, judged, problems, embeddings=embeddings, mels_db=mels)
