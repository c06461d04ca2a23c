"""speakdigits.audio's own computations against the libraries they stand in for.

Extraction computes librosa's window, mel filter bank, trimming, dB scale,
resampling and mel spectrogram with NumPy alone (importing librosa's parts
costs seconds per run), and decodes plain 16-bit wavs without libsndfile.
The features must stay the same bytes, so each is compared here, bit for bit,
with librosa's or libsndfile's result on varied real inputs.
"""

from __future__ import annotations

import io
import os
import platform
import struct
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from speakdigits import audio, wav
from speakdigits.params import MelParams, empty_mel_bands

RNG = np.random.default_rng(1234)


def speechlike(n: int, rng: np.random.Generator, *, lead: int, length: int, noise: float) -> np.ndarray:
    """Noise with a loud burst of ``length`` samples after ``lead`` silent-ish ones (float32)."""
    samples = noise * rng.standard_normal(n)
    burst = np.sin(np.linspace(0, np.pi, length)) ** 2 * rng.standard_normal(length)
    samples[lead : lead + length] += 0.6 * burst
    return samples.astype(np.float32)


@pytest.mark.parametrize("n_fft", [256, 1024, 2048, 2000])
def test_hann_window_is_scipys_periodic_hann(n_fft):
    assert audio.hann_window(n_fft).tobytes() == scipy.signal.get_window("hann", n_fft, fftbins=True).tobytes()


@pytest.mark.parametrize(
    "sample_rate, n_fft, n_mels, fmin, fmax",
    [
        (22050, 1024, 64, 0.0, None),
        (22050, 2048, 50, 0.0, None),
        (16000, 512, 40, 20.0, 7600.0),
        (8000, 256, 32, 0.0, None),
        (22050, 1024, 128, 300.0, 8000.0),
        (44100, 2048, 80, 0.0, 1000.0),
    ],
)
def test_mel_filters_are_librosas(sample_rate, n_fft, n_mels, fmin, fmax):
    ours = audio.mel_filters(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    theirs = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.tobytes() == theirs.tobytes()


@pytest.mark.parametrize("top_db", [None, 80.0, 20.0])
def test_power_to_db_is_librosas(top_db):
    power = (RNG.standard_normal((40, 30)) ** 2 * 10.0 ** RNG.uniform(-14, 2, (40, 30))).astype(np.float32)
    ours = audio.power_to_db(power, amin=1e-10, top_db=top_db)
    assert ours.tobytes() == librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=top_db).tobytes()


@pytest.mark.parametrize("case", range(12))
def test_trim_bounds_are_librosas(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(3000, 40000))
    lead, length = int(rng.integers(0, n // 2)), int(rng.integers(500, n // 2))
    samples = speechlike(n, rng, lead=lead, length=length, noise=10.0 ** rng.uniform(-6, -1))
    top_db = float(rng.choice([20.0, 40.0, 60.0]))
    _, (start, end) = librosa.effects.trim(samples, top_db=top_db)
    assert audio.trim_bounds(samples, top_db=top_db) == (int(start), int(end))


def test_trim_bounds_of_digital_silence_are_librosas():
    # Every frame equals the loudest one, so nothing is trimmed (trim_normalize_pad refuses such clips first).
    samples = np.zeros(5000, dtype=np.float32)
    _, (start, end) = librosa.effects.trim(samples, top_db=40.0)
    assert audio.trim_bounds(samples, top_db=40.0) == (int(start), int(end))


@pytest.mark.parametrize("orig_sr, n", [(48000, 58001), (8000, 3517), (16000, 16000), (44100, 1000)])
def test_resample_is_librosas(orig_sr, n):
    samples = RNG.standard_normal(n).astype(np.float32)
    ours = wav.resample(samples, orig_sr=orig_sr, target_sr=22050)
    assert ours.tobytes() == librosa.resample(samples, orig_sr=orig_sr, target_sr=22050).tobytes()


@pytest.mark.parametrize("speech_ends", [None, 11000, 0])
@pytest.mark.parametrize(
    "n_mels, frames, n_fft, fmax", [(64, 64, 1024, None), (50, 50, 2048, None), (40, 32, 512, 8000.0)]
)
def test_log_mel_is_librosas_melspectrogram_in_db(n_mels, frames, n_fft, fmax, speech_ends):
    """Within 0.001 dB of librosa's (float32 instead of its float64 STFT), also where the clip
    ends in zeros (frames not transformed) or is all zeros."""
    sr, duration = 22050, 1.0
    samples = speechlike(sr, np.random.default_rng(n_mels), lead=2000, length=9000, noise=1e-3)
    if speech_ends is not None:
        samples[speech_ends:] = 0.0  # as trim_normalize_pad pads an onset-aligned clip
    mel = MelParams(
        sample_rate=sr,
        duration=duration,
        n_mels=n_mels,
        frames=frames,
        n_fft=n_fft,
        fmin=0.0,
        fmax=fmax,
        trim_db=None,
        top_db=80.0,
    )
    hop = mel.hop
    power = librosa.feature.melspectrogram(
        y=samples,
        sr=sr,
        n_fft=n_fft,
        hop_length=hop,
        n_mels=n_mels,
        fmin=0.0,
        fmax=fmax,
        power=2.0,
        center=True,
        pad_mode="constant",
    )
    theirs = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=80.0)[:, :frames].astype(np.float32)
    ours = audio.log_mel(samples, mel=mel)
    assert ours.shape == (n_mels, frames) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= 1e-3


def wav_bytes(samples: np.ndarray, sr: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, subtype=subtype, format="WAV")
    return buffer.getvalue()


def with_chunk_before_data(data: bytes, chunk: bytes) -> bytes:
    """Insert an odd-sized chunk (padded to even length) between ``fmt `` and ``data``."""
    at = data.index(b"data")
    body = chunk + (b"\0" if len(chunk) % 2 else b"")
    out = data[:at] + b"LIST" + struct.pack("<I", len(chunk)) + body + data[at:]
    return out[:4] + struct.pack("<I", len(out) - 8) + out[8:]


@pytest.mark.parametrize(
    "make",
    [
        lambda: wav_bytes(RNG.uniform(-0.9, 0.9, 9000), 16000, "PCM_16"),  # mono, the fast path
        lambda: wav_bytes(RNG.uniform(-0.9, 0.9, (9000, 2)), 48000, "PCM_16"),  # stereo, the fast path
        lambda: with_chunk_before_data(wav_bytes(RNG.uniform(-0.5, 0.5, 8000), 8000, "PCM_16"), b"INFOabc"),
        lambda: wav_bytes(RNG.uniform(-0.9, 0.9, 9000), 22050, "FLOAT"),  # libsndfile's path
        lambda: wav_bytes(RNG.uniform(-0.9, 0.9, 9000), 22050, "PCM_U8"),
        lambda: wav_bytes(RNG.uniform(-0.9, 0.9, 9000), 22050, "PCM_24"),
    ],
)
def test_decode_gives_libsndfiles_samples(make):
    data = make()
    samples, sr = wav.decode_wav(data)
    expected, expected_sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert sr == expected_sr
    assert samples.tobytes() == expected.mean(axis=1).astype(np.float32).tobytes()


def test_fast_and_libsndfile_paths_refuse_the_same_header_alike():
    # 3 kHz: below MIN_SAMPLE_RATE, as 16-bit PCM (read here) and as float (read by libsndfile).
    for subtype in ("PCM_16", "FLOAT"):
        with pytest.raises(wav.BadClip, match=r"^sample rate 3000 Hz; expected 4000 to 192000 Hz$"):
            wav.decode_wav(wav_bytes(np.zeros(3000), 3000, subtype))


def test_a_data_chunk_longer_than_the_file_is_left_to_libsndfile():
    data = wav_bytes(RNG.uniform(-0.5, 0.5, 8000), 8000, "PCM_16")
    truncated = data[:-4000]  # the header still promises 8000 samples
    samples, _ = wav.decode_wav(truncated)
    expected, _ = sf.read(io.BytesIO(truncated), dtype="float32", always_2d=True)
    assert samples.tobytes() == expected.mean(axis=1).astype(np.float32).tobytes()


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050])
@pytest.mark.parametrize("n_fft", [128, 256, 1024])
@pytest.mark.parametrize("n_mels", [16, 96, 128, 256])
def test_check_params_finds_exactly_the_empty_rows_of_the_filter_bank(sample_rate, n_fft, n_mels):
    # params.py cannot import audio.py (which imports params), so it repeats Slaney's scale to find empty
    # bands; this keeps the two the same.
    bank = audio.mel_filters(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=4000.0)
    empty = empty_mel_bands(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=4000.0)
    assert empty == np.flatnonzero(bank.max(axis=1) == 0).tolist()


# OpenBLAS picks its float kernels for the CPU it runs on; these two run on any x86-64 CPU and sum
# in different orders, as two machines' kernels do.
_BLAS_KERNELS = ("Prescott", "Nehalem")
_LOG_MEL_BYTES = """
import hashlib, sys
import numpy as np
from speakdigits import audio
from speakdigits.params import MelParams
mel = MelParams(sample_rate=16000, duration=1.0, n_mels=64, frames=64, n_fft=1024, fmin=0.0, fmax=None,
                trim_db=None, top_db=80.0)
rng = np.random.default_rng(7)
images = [audio.log_mel((0.3 * rng.standard_normal(16000)).astype(np.float32), mel=mel) for _ in range(20)]
sys.stdout.write(hashlib.sha256(np.stack(images).tobytes()).hexdigest())
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OpenBLAS's x86 kernels")
def test_log_mel_is_the_same_bytes_whatever_blas_kernel_the_cpu_gets():
    # Another machine's CPU gave other feature bytes (the float32 mel projection's sums rounded
    # differently), so every later stage's output differed; each kernel here is forced, in its own process.
    digests = set()
    for kernel in _BLAS_KERNELS:
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel, "OPENBLAS_NUM_THREADS": "1"}
        result = subprocess.run(
            [sys.executable, "-c", _LOG_MEL_BYTES],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(result.stdout)
    assert len(digests) == 1
