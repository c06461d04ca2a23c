"""Audio in and out: decoding clips, fixed-length log-mel spectrograms, wav bytes.

Plain functions with explicit keyword parameters. The same settings (the
``mel`` section of params.yaml) serve extraction and, later, inversion back
to audio, so :func:`hop_length` is the single place that decides the frame hop.
"""

from __future__ import annotations

import io

import librosa
import numpy as np
import soundfile

from speakdigits.errors import PipelineError

# A clip whose peak stays below this (-80 dBFS) carries no usable speech.
SILENCE_PEAK = 1e-4
# What a recording of one spoken digit can be. Checked from the header before
# decoding, so that a lying header (1 Hz, hours long) costs nothing: resampling
# is then bounded by MAX_CLIP_SECONDS at MAX_SAMPLE_RATE.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 192_000
MIN_CLIP_SECONDS, MAX_CLIP_SECONDS = 0.1, 30.0
# The largest file such a clip can be (stereo, 32-bit, plus a generous header);
# a larger archive member is not even read.
MAX_CLIP_BYTES = int(MAX_CLIP_SECONDS * MAX_SAMPLE_RATE) * 2 * 4 + 2**20


class BadClip(ValueError):
    """A clip that cannot be used; the message says why in a few words."""


def hop_length(*, sample_rate: int, duration: float, frames: int) -> int:
    """Frame hop that gives exactly ``frames`` centred frames over ``duration`` seconds.

    With centred frames librosa yields ``1 + n_samples // hop`` frames; the hop
    ``n_samples // (frames - 1)`` gives at least ``frames`` of them, and
    :func:`log_mel` keeps the first ``frames``.
    """
    n_samples = round(duration * sample_rate)
    return max(1, n_samples // (frames - 1))


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a sound file's bytes into mono float samples.

    Parameters
    ----------
    data : bytes
        The contents of a wav (or any libsndfile-readable) file.

    Returns
    -------
    samples : numpy.ndarray
        float32 mono samples (channels averaged).
    sample_rate : int
        The file's sample rate.

    Raises
    ------
    BadClip
        When the bytes are empty or unreadable, the sample rate or length is
        not that of a spoken digit (see ``MIN_SAMPLE_RATE``, ``MIN_CLIP_SECONDS``
        and their maxima), or the samples are not finite.
    """
    if len(data) == 0:
        raise BadClip("empty file (zero bytes)")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            sr, frames = sound.samplerate, sound.frames
            if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
                raise BadClip(f"sample rate {sr} Hz; expected {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
            if not MIN_CLIP_SECONDS <= frames / sr <= MAX_CLIP_SECONDS:
                raise BadClip(f"{frames} samples ({frames / sr:.3g} s); expected a clip of "
                              f"{MIN_CLIP_SECONDS:g} to {MAX_CLIP_SECONDS:g} s")
            samples = sound.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
        if isinstance(err, BadClip):
            raise
        # libsndfile's own text, not str(err): that names the BytesIO object by its memory address.
        detail = err.error_string if isinstance(err, soundfile.LibsndfileError) else (
            (str(err).splitlines() or [type(err).__name__])[0])
        raise BadClip(f"unreadable ({detail})") from None
    if samples.shape[0] == 0:
        raise BadClip("no samples")
    samples = samples.mean(axis=1)
    if not np.all(np.isfinite(samples)):
        raise BadClip("NaN or infinite samples")
    return samples, int(sr)


def fix_length(samples: np.ndarray, *, sample_rate: int, duration: float, trim_db: float | None) -> np.ndarray:
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
    peak = float(np.abs(samples).max())
    if peak < SILENCE_PEAK:
        raise BadClip(f"silent (peak {peak:.2g} below {SILENCE_PEAK:g})")
    if trim_db is not None:
        samples, _ = librosa.effects.trim(samples, top_db=trim_db)
    samples = samples / np.abs(samples).max()
    n_samples = round(duration * sample_rate)
    out = np.zeros(n_samples, dtype=np.float32)
    out[: min(n_samples, len(samples))] = samples[:n_samples]
    return out


def log_mel(
    samples: np.ndarray,
    *,
    sample_rate: int,
    n_mels: int,
    frames: int,
    n_fft: int,
    duration: float,
    fmin: float,
    fmax: float | None,
    top_db: float,
) -> np.ndarray:
    """Log-mel spectrogram of a fixed-length clip, ``n_mels`` x ``frames``, in dB.

    Parameters
    ----------
    samples : numpy.ndarray
        ``duration * sample_rate`` mono samples (see :func:`fix_length`).
    sample_rate, n_mels, frames, n_fft, duration, fmin, fmax, top_db
        The ``mel`` section of params.yaml; ``top_db`` floors the result that
        many dB below its maximum.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n_mels, frames)``: ``power_to_db`` of the
        mel power spectrogram with reference 1.0.
    """
    hop = hop_length(sample_rate=sample_rate, duration=duration, frames=frames)
    power = librosa.feature.melspectrogram(
        y=samples, sr=sample_rate, n_fft=n_fft, hop_length=hop, n_mels=n_mels,
        fmin=fmin, fmax=fmax, power=2.0, center=True, pad_mode="constant",
    )
    db = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=top_db)
    return db[:, :frames].astype(np.float32)


def clip_to_mel(data: bytes, mel: dict) -> np.ndarray:
    """Wav bytes to the pipeline's log-mel image, with the ``mel`` params.

    Raises
    ------
    BadClip
        When the clip is unusable (see :func:`decode_wav`, :func:`fix_length`).
    """
    samples, sr = decode_wav(data)
    if sr != mel["sample_rate"]:
        samples = librosa.resample(samples, orig_sr=sr, target_sr=mel["sample_rate"])
    fixed = fix_length(samples, sample_rate=mel["sample_rate"], duration=mel["duration"], trim_db=mel["trim_db"])
    return log_mel(
        fixed, sample_rate=mel["sample_rate"], n_mels=mel["n_mels"], frames=mel["frames"], n_fft=mel["n_fft"],
        duration=mel["duration"], fmin=mel["fmin"], fmax=mel["fmax"], top_db=mel["top_db"],
    )


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Encode mono samples as 16-bit PCM wav bytes (deterministic: no timestamps).

    Parameters
    ----------
    samples : numpy.ndarray
        int16 samples, or floats in [-1, 1].
    sample_rate : int
        Rate written in the header.
    """
    if samples.dtype != np.int16:
        if not np.all(np.isfinite(samples)):
            raise PipelineError("refusing to write a wav with NaN or infinite samples")
        samples = (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()
