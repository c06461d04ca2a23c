"""Wav files in and out: decoding a recording's bytes into samples, resampling, encoding samples.

What every stage that touches a recording needs, and nothing about mel
spectrograms (:mod:`speakdigits.audio`), so that an edit to the features does
not make ``download`` stale.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile
import soxr

from speakdigits.errors import PipelineError

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


def _check_header(sr: int, frames: int) -> None:
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise BadClip(f"sample rate {sr} Hz; expected {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
    if not MIN_CLIP_SECONDS <= frames / sr <= MAX_CLIP_SECONDS:
        raise BadClip(
            f"{frames} samples ({frames / sr:.3g} s); expected a clip of {MIN_CLIP_SECONDS:g} to {MAX_CLIP_SECONDS:g} s"
        )


def _pcm16_wav(data: bytes) -> tuple[int, int, memoryview] | None:
    """``(sample rate, channels, sample bytes)`` of a well-formed 16-bit PCM wav, else None.

    The recordings of every source are such files; reading them here skips
    libsndfile's per-call set-up, which took most of the decoding time
    (0.35 of 0.38 ms per AudioMNIST clip). Anything unusual is left to
    libsndfile, so both paths give the same samples and the same errors.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    view, offset, fmt = memoryview(data), 12, None
    while offset + 8 <= len(data):
        chunk_id, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if body + size > len(data):  # a chunk running past the end: libsndfile decides
            return None
        if chunk_id == b"fmt " and size >= 16:
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif chunk_id == b"data":
            if fmt is None:
                return None
            tag, channels, rate, _, block_align, bits = fmt
            if tag != 1 or bits != 16 or channels < 1 or block_align != 2 * channels:
                return None
            return rate, channels, view[body : body + size - size % block_align]
        offset = body + size + (size & 1)  # chunks are padded to an even length
    return None


#: Enough of a wav file's start to hold its ``fmt`` chunk (after any metadata chunks a recorder puts first).
HEADER_BYTES = 4096


def header_sample_rate(head: bytes) -> int | None:
    """The sample rate a wav file's ``fmt`` chunk declares, from the file's first bytes.

    None when ``head`` is not the start of a RIFF/WAVE file, holds no complete
    ``fmt`` chunk, or declares a rate no spoken-digit clip has (see
    ``MIN_SAMPLE_RATE``).
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(head):
        chunk_id, size = head[offset : offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        if chunk_id == b"fmt ":
            if size < 16 or offset + 24 > len(head):
                return None
            rate = struct.unpack_from("<I", head, offset + 12)[0]  # after the format tag and channel count
            return rate if MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE else None
        offset += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


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
    pcm16 = _pcm16_wav(data)
    if pcm16 is not None:
        sr, channels, raw = pcm16
        _check_header(sr, len(raw) // (2 * channels))
        # What libsndfile returns for 16-bit PCM: int / 32768 in float32.
        samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).astype(np.float32) / np.float32(32768)
    else:
        try:
            with soundfile.SoundFile(io.BytesIO(data)) as sound:
                sr = sound.samplerate
                _check_header(sr, sound.frames)
                samples = sound.read(dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
            if isinstance(err, BadClip):
                raise
            # libsndfile's own text, not str(err): that names the BytesIO object by its memory address.
            detail = (
                err.error_string
                if isinstance(err, soundfile.LibsndfileError)
                else ((str(err).splitlines() or [type(err).__name__])[0])
            )
            raise BadClip(f"unreadable ({detail})") from None
    if samples.shape[0] == 0:
        raise BadClip("no samples")
    samples = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)  # the mean of one is itself
    if pcm16 is None and not np.all(np.isfinite(samples)):  # 16-bit integers always are
        raise BadClip("NaN or infinite samples")
    return samples, int(sr)


def resample(samples: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """``librosa.resample`` with its default soxr_hq filter, without its per-call overhead (same samples)."""
    n_samples = int(np.ceil(len(samples) * float(target_sr) / orig_sr))
    out = soxr.resample(samples, orig_sr, target_sr, quality="soxr_hq")[:n_samples]
    if len(out) < n_samples:
        out = np.pad(out, (0, n_samples - len(out)))
    return out.astype(samples.dtype, copy=False)


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
