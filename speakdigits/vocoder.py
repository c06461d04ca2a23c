"""From log-mel images back to sound: Griffin-Lim phase reconstruction (librosa).

Uses the same ``mel`` settings as extraction (and the same frame hop, from
:func:`speakdigits.audio.hop_length`), so what was analysed is what is inverted.
"""

from __future__ import annotations

import multiprocessing

import librosa
import numpy as np

from speakdigits.audio import hop_length
from speakdigits.cores import available_cores, init_worker
from speakdigits.params import MelParams

#: Fewest clips per worker process before Griffin-Lim is spread over processes.
CLIPS_PER_PROCESS = 8

# Peak level of written clips: -1 dBFS leaves headroom against clipping in players.
PEAK = 10 ** (-1 / 20)


def mel_to_audio(mel_db: np.ndarray, *, mel: MelParams, n_iter: int, momentum: float, seed: int) -> np.ndarray:
    """Invert one log-mel image (dB, ``n_mels x frames``) to a waveform.

    The mel power spectrogram is mapped back to a linear-frequency magnitude
    spectrogram (non-negative least squares), whose phase Griffin-Lim then
    estimates, starting from random phases drawn with ``seed``.

    Parameters
    ----------
    mel_db : numpy.ndarray
        Log-mel spectrogram in dB, as made by :func:`speakdigits.audio.log_mel`.
    mel : MelParams
        The ``mel`` section of params.yaml.
    n_iter : int
        Griffin-Lim iterations.
    momentum : float
        Griffin-Lim momentum (0.99 is librosa's fast variant).
    seed : int
        Seed of the initial phases.

    Returns
    -------
    numpy.ndarray
        float32 samples, ``mel.duration`` seconds at ``mel.sample_rate``,
        peak-normalised to -1 dBFS (all zeros if the input was silent).
    """
    power = librosa.db_to_power(np.asarray(mel_db, dtype=np.float64))
    magnitude = librosa.feature.inverse.mel_to_stft(
        power,
        sr=mel.sample_rate,
        n_fft=mel.n_fft,
        power=2.0,
        fmin=mel.fmin,
        fmax=mel.fmax,
    )
    samples = librosa.griffinlim(
        magnitude,
        n_iter=n_iter,
        momentum=momentum,
        hop_length=hop_length(sample_rate=mel.sample_rate, duration=mel.duration, frames=mel.frames),
        n_fft=mel.n_fft,
        center=True,
        pad_mode="constant",
        init="random",
        random_state=np.random.default_rng(seed),
        length=round(mel.duration * mel.sample_rate),
    )
    return peak_normalize(samples)


def _invert(task: tuple) -> np.ndarray:
    mel_db, mel, n_iter, momentum, seed = task
    return mel_to_audio(mel_db, mel=mel, n_iter=n_iter, momentum=momentum, seed=seed)


def mel_to_audio_many(
    images_db: np.ndarray, *, mel: MelParams, n_iter: int, momentum: float, seeds: list[int], jobs: int | None = None
) -> list[np.ndarray]:
    """:func:`mel_to_audio` of each image (with its own seed), on ``jobs`` processes.

    By default on every core the process may use
    (:func:`speakdigits.cores.available_cores`), one BLAS thread each. The
    workers are spawned, not forked: the caller has TensorFlow loaded, whose
    threads do not survive a fork. Each clip depends on its own seed only, so
    the result is the same whatever the number of processes.
    """
    tasks = [(image, mel, n_iter, momentum, seed) for image, seed in zip(images_db, seeds, strict=True)]
    # A spawned worker takes about 2 s to start (it imports librosa): worth it from a few clips each.
    jobs = min(jobs or available_cores(), max(1, len(tasks) // CLIPS_PER_PROCESS))
    if jobs <= 1:
        return [_invert(task) for task in tasks]
    with multiprocessing.get_context("spawn").Pool(jobs, initializer=init_worker) as pool:
        return pool.map(_invert, tasks, chunksize=max(1, len(tasks) // (4 * jobs)))


def peak_normalize(samples: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """Scale so that the largest magnitude is ``peak``; NaN and inf become 0."""
    samples = np.nan_to_num(np.asarray(samples, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = np.abs(samples).max() if samples.size else 0.0
    return (samples * (peak / top) if top > 0 else samples).astype(np.float32)
