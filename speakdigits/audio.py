"""From a recording to the pipeline's features: the clip trimmed and padded, its log-mel spectrogram.

Plain functions with explicit keyword parameters. The same settings (the
``mel`` geometry: :class:`speakdigits.params.MelParams`, whose ``hop`` and
``n_samples`` are derived in one place) serve extraction and, later, inversion
back to audio.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from speakdigits.params import MelParams, hz_to_mel, mel_to_hz
from speakdigits.wav import BadClip, decode_wav, resample

# A clip whose peak stays below this (-80 dBFS) carries no usable speech.
SILENCE_PEAK = 1e-4


def trim_normalize_pad(samples: np.ndarray, *, sample_rate: int, duration: float, trim_db: float | None) -> np.ndarray:
    """Trim leading and trailing silence, peak-normalise, then pad or cut to ``duration``.

    Speech starts at the first sample, so that every clip is aligned on its
    onset; loudness differences between recordings are removed by scaling the
    peak to 1.

    Parameters
    ----------
    samples : numpy.ndarray
        Mono float samples.
    sample_rate : int
        Their rate.
    duration : float
        Target length in seconds.
    trim_db : float or None
        Trim what stays this many dB below the clip's peak; None keeps the
        clip as it is.

    Raises
    ------
    BadClip
        When the clip is silent.
    """
    peak = float(_peak(samples))
    if peak < SILENCE_PEAK:
        raise BadClip(f"silent (peak {peak:.2g} below {SILENCE_PEAK:g})")
    if trim_db is not None:
        start, end = trim_bounds(samples, top_db=trim_db)
        samples = samples[start:end]
    n_samples = round(duration * sample_rate)
    out = np.zeros(n_samples, dtype=np.float32)
    kept = min(n_samples, len(samples))
    np.divide(samples[:kept], _peak(samples), out=out[:kept])
    return out


def _peak(samples: np.ndarray) -> np.floating:
    """``np.abs(samples).max()``, without making the array of absolute values."""
    return max(samples.max(), -samples.min())


def log_mel(samples: np.ndarray, *, mel: MelParams) -> np.ndarray:
    """Log-mel spectrogram of a prepared clip, ``mel.n_mels`` x ``mel.frames``, in dB.

    Parameters
    ----------
    samples : numpy.ndarray
        ``mel.n_samples`` mono samples (see :func:`prepare`).
    mel : MelParams
        The geometry; ``mel.top_db`` floors the result that many dB below its
        maximum, and ``mel.fmax`` None is ``sample_rate / 2``.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n_mels, frames)``: ``power_to_db`` of the
        mel power spectrogram with reference 1.0.
    """
    n_fft, frames, hop = mel.n_fft, mel.frames, mel.hop
    # librosa.feature.melspectrogram(center=True, pad_mode="constant", power=2) computed for the
    # first ``frames`` frames only, with its window and filter bank made once, not per clip (the
    # filter bank alone was a fifth of the extraction time). librosa windows and transforms in
    # float64 and rounds to complex64; doing both in float32 is a third faster and moves no value
    # by more than 0.001 dB (the tests hold it to that).
    padded = _zero_padded(samples.astype(np.float32, copy=False), n_fft // 2)
    # Onset-aligned clips end in zeros (a spoken digit lasts about half of the default second):
    # a frame that sees only zeros has zero power, so only the frames reaching a non-zero sample
    # are transformed.
    last = len(samples) - int(np.argmax(samples[::-1] != 0))  # past the last non-zero sample (all: none is)
    live = min(frames, -(-(last + n_fft // 2) // hop))
    framed = _frames(padded, frame_length=n_fft, hop_length=hop, count=live)
    spectrum = scipy.fft.rfft(hann_window(n_fft, dtype=np.float32)[:, None] * framed, axis=-2)
    # From the spectrum on in float64, rounded to float32 once, at the end: in float32 the mel
    # projection's sums, in the OpenBLAS kernel picked for the CPU, rounded differently on another
    # machine, and all its features were other bytes (NumPy's SIMD loops for |z| and the log may
    # too). float64's differences lie far below float32's rounding.
    power = spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2
    bank = mel_filters(sample_rate=mel.sample_rate, n_fft=n_fft, n_mels=mel.n_mels, fmin=mel.fmin, fmax=mel.fmax)
    mel_power = np.zeros((mel.n_mels, frames), dtype=np.float64)
    mel_power[:, :live] = bank.astype(np.float64) @ power
    return power_to_db(mel_power, amin=1e-10, top_db=mel.top_db).astype(np.float32)


def _zero_padded(samples: np.ndarray, pad: int) -> np.ndarray:
    """``np.pad(samples, pad)`` without its per-call overhead."""
    padded = np.zeros(len(samples) + 2 * pad, dtype=samples.dtype)
    padded[pad : pad + len(samples)] = samples
    return padded


def _frames(padded: np.ndarray, *, frame_length: int, hop_length: int, count: int) -> np.ndarray:
    """The first ``count`` frames of ``padded`` as a read-only view, ``frame_length`` x ``count``
    (``sliding_window_view(...)[::hop_length].T``, without its per-call overhead)."""
    count = min(count, 1 + (len(padded) - frame_length) // hop_length)
    step = padded.strides[0]
    return np.lib.stride_tricks.as_strided(
        padded, shape=(frame_length, count), strides=(step, hop_length * step), writeable=False
    )


# ------------------------------------------- librosa's computations, with NumPy alone
# Extraction needs five small functions of librosa, but importing librosa's filters and
# effects pulls in numba, scikit-learn and scipy.signal: 2.3 s of a 5.8 s extraction of
# the FSDD, paid by every run of the stage. They are recomputed here with the same
# operations in the same order, so the results are the same bytes (the tests compare
# them with librosa's own); the vocoder, which inverts these mels, uses librosa itself.


@functools.cache
def hann_window(n_fft: int, dtype: type = np.float64) -> np.ndarray:
    """The periodic Hann window of librosa's STFT (``scipy.signal.get_window('hann', n_fft, fftbins=True)``),
    computed in float64 and then rounded to ``dtype``."""
    fac = np.linspace(-np.pi, np.pi, n_fft + 1, dtype=np.float64)
    window = np.zeros(n_fft + 1, dtype=np.float64)
    for k, a in enumerate((0.5, 0.5)):
        window += a * np.cos(k * fac)
    window = window[:-1].astype(dtype)
    window.setflags(write=False)
    return window


@functools.cache
def mel_filters(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """``librosa.filters.mel`` with its defaults (Slaney's scale and area normalisation), float32,
    ``n_mels`` x ``1 + n_fft // 2``; ``fmax`` None is ``sample_rate / 2``."""
    fmax = float(sample_rate) / 2 if fmax is None else fmax
    weights = np.zeros((n_mels, int(1 + n_fft // 2)), dtype=np.float32)
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    weights.setflags(write=False)
    return weights


def power_to_db(power: np.ndarray, *, amin: float, top_db: float | None, ref: float = 1.0) -> np.ndarray:
    """``librosa.power_to_db``: ``10 log10(power / ref)``, floored at ``amin`` and ``top_db`` below the maximum."""
    log_spec = 10.0 * np.log10(np.maximum(amin, power))
    log_spec -= 10.0 * np.log10(np.maximum(amin, np.abs(ref)))
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def trim_bounds(
    samples: np.ndarray, *, top_db: float, frame_length: int = 2048, hop_length: int = 512
) -> tuple[int, int]:
    """``librosa.effects.trim``'s interval: from the first to past the last frame whose RMS is within
    ``top_db`` of the loudest frame's; ``(0, 0)`` when none is."""
    # Each sample squared once, not once per frame it falls in (four times): the same squares,
    # summed over the same frames in the same (pairwise) order as librosa's, so the same bytes.
    squares = np.square(_zero_padded(samples, frame_length // 2), dtype=np.float32)
    frames = _frames(squares, frame_length=frame_length, hop_length=hop_length, count=len(squares))
    rms = np.sqrt(np.mean(frames, axis=0))
    magnitude = np.abs(rms)
    ref = np.max(magnitude)
    db = power_to_db(np.square(magnitude, out=magnitude), ref=ref**2, amin=1e-5**2, top_db=None)
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return 0, 0
    return int(loud[0] * hop_length), min(len(samples), int((loud[-1] + 1) * hop_length))


def prepare(data: bytes, mel: MelParams) -> np.ndarray:
    """Wav bytes to the clip every later step works on: decoded, resampled to ``mel.sample_rate``,
    trimmed, peak-normalised and cut or padded to ``mel.duration`` (:func:`trim_normalize_pad`).

    Raises
    ------
    BadClip
        When the clip is unusable (see :func:`decode_wav`, :func:`trim_normalize_pad`).
    """
    samples, sr = decode_wav(data)
    if sr != mel.sample_rate:
        samples = resample(samples, orig_sr=sr, target_sr=mel.sample_rate)
    return trim_normalize_pad(samples, sample_rate=mel.sample_rate, duration=mel.duration, trim_db=mel.trim_db)


def clip_to_mel(data: bytes, mel: MelParams) -> np.ndarray:
    """Wav bytes to the pipeline's log-mel image: :func:`log_mel` of :func:`prepare`.

    Raises
    ------
    BadClip
        When the clip is unusable.
    """
    return log_mel(prepare(data, mel), mel=mel)
