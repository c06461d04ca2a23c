"""The MFCC judge's front end: what it hears of a clip, computed from the audio alone.

The clip at 16 kHz, its leading and trailing silence trimmed at 30 dB below
its peak (librosa's own trim, not the pipeline's), peak-normalised and cut or
padded to one second; then 20 MFCCs of 25 ms frames every 10 ms (40 mel bands
up to 8 kHz). The digit judge hears them with each coefficient's mean and
spread over the clip removed (:func:`per_clip_normalised`), so that a level,
a channel or a band a recording lacks moves nothing; the speaker judge hears
them as they are, for a voice's timbre is in those means. Nothing
here reads the pipeline's features (:mod:`speakdigits.audio`'s log-mel), and
nothing here loads TensorFlow: worker processes import this module alone.
"""

from __future__ import annotations

import numpy as np

from speakdigits.cores import mapped
from speakdigits.wav import BadClip, decode_wav, resample

SAMPLE_RATE = 16_000
SECONDS = 1.0
TRIM_DB = 30.0
N_MFCC, N_MELS = 20, 40
WINDOW, HOP = 400, 160  # 25 ms frames every 10 ms
FRAMES = 1 + int(SAMPLE_RATE * SECONDS) // HOP
#: Fewest clips per worker process before the front end is spread over processes.
CLIPS_PER_PROCESS = 64


def front_end(samples: np.ndarray, rate: int) -> np.ndarray:
    """A clip's MFCCs as the judge hears them: :data:`FRAMES` x :data:`N_MFCC` float32 (see the module docstring).

    Raises
    ------
    BadClip
        When the clip is silent.
    """
    import librosa  # here, not at the top: a process that only reads the constants need not load it (2 s)

    samples = np.asarray(samples, dtype=np.float32)
    if rate != SAMPLE_RATE:
        samples = resample(samples, orig_sr=rate, target_sr=SAMPLE_RATE)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak < 1e-4:
        raise BadClip("silent")
    samples, _ = librosa.effects.trim(samples / peak, top_db=TRIM_DB)
    length = int(SAMPLE_RATE * SECONDS)
    samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
    mfcc = librosa.feature.mfcc(
        y=samples, sr=SAMPLE_RATE, n_mfcc=N_MFCC, n_fft=WINDOW, hop_length=HOP, n_mels=N_MELS, fmax=SAMPLE_RATE / 2
    )
    return mfcc.T.astype(np.float32)


def per_clip_normalised(mfcc: np.ndarray) -> np.ndarray:
    """MFCCs (``... x FRAMES x N_MFCC``) with each coefficient's mean and spread over its clip removed."""
    mfcc = np.asarray(mfcc, dtype=np.float32)
    return (mfcc - mfcc.mean(axis=-2, keepdims=True)) / (mfcc.std(axis=-2, keepdims=True) + 1e-6)


def _front_end(wav: bytes) -> np.ndarray | str:
    """:func:`front_end` of a wav file, or why it cannot be heard."""
    try:
        return front_end(*decode_wav(wav))
    except BadClip as err:
        return str(err)


def hear(wavs: list[bytes], *, jobs: int | None = None) -> list[np.ndarray | str]:
    """:func:`front_end` of every wav file (or the reason it cannot be heard), on ``jobs`` spawned processes."""
    return list(mapped(_front_end, wavs, per_process=CLIPS_PER_PROCESS, jobs=jobs))
