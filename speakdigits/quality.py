"""How clips sound, measured on the audio with tools that never see the pipeline's features.

The digit judges say whether a clip says the right digit; these say whether it
sounds spoken:

- **voicing** (:func:`voicing`): librosa's pYIN on the clip at 16 kHz
  (60-400 Hz, 1024-sample frames, hop 256) finds the frames with a pitch; the
  voiced share is their part of the speech frames (those within 30 dB of the
  clip's loudest, by RMS), and the f0 of those frames is the voice's range.
  Real speech is mostly voiced (on FSDD, 65 % of speech frames); a whisper,
  noise shaped like speech, is not (1 %).
- **DNSMOS P.835** (:func:`dnsmos`): Microsoft's non-intrusive predictors of
  listeners' ratings, SIG (the speech signal), BAK (the background), OVRL
  (overall) and P.808's overall rating, from the ONNX models that the
  ``speechmos`` package bundles, run by onnxruntime on one thread.
- **PESQ-WB** (:func:`pesq_wb`): ITU-T P.862.2, how close a processed clip
  sounds to its original, for the vocoder path (a real clip through its own mel
  and pitch track and back).

Every measure takes float samples at :data:`SAMPLE_RATE`; :func:`at_16k`
resamples. :func:`measure` does all of a clip's in one call, and
:func:`measure_many` spreads clips over worker processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speakdigits import librosa_kernels
from speakdigits.cores import mapped
from speakdigits.wav import BadClip, decode_wav, resample

#: The rate every measure here works at (DNSMOS and PESQ-WB are defined at 16 kHz).
SAMPLE_RATE = 16_000
#: pYIN's settings for the voicing measure.
F0_RANGE = (60.0, 400.0)
FRAME, HOP = 1024, 256
#: Speech frames: RMS within this many dB of the clip's loudest frame.
SPEECH_DB = 30.0
#: DNSMOS rates 9.01 s of audio; a shorter clip is repeated to fill it (as speechmos does).
DNSMOS_SECONDS = 9.01
#: Fewest clips per worker process before the measures are spread over processes.
CLIPS_PER_PROCESS = 8
KEYS = ("voiced", "f0_median", "sig", "bak", "ovrl", "p808")


def at_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` at :data:`SAMPLE_RATE` (float32)."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples if rate == SAMPLE_RATE else resample(samples, orig_sr=rate, target_sr=SAMPLE_RATE)


def voicing(samples: np.ndarray) -> tuple[float, np.ndarray]:
    """The voiced share of a clip's speech frames, and the f0 (Hz) of its voiced speech frames.

    Parameters
    ----------
    samples : numpy.ndarray
        The clip at :data:`SAMPLE_RATE`.

    Returns
    -------
    (float, numpy.ndarray)
        The share (0 when the clip has no speech frame) and the f0 values.
    """
    import librosa  # here: the stages that do not measure need not load it

    samples = np.asarray(samples, dtype=np.float32)
    librosa_kernels.ready()
    f0, voiced, _ = librosa.pyin(
        samples, fmin=F0_RANGE[0], fmax=F0_RANGE[1], sr=SAMPLE_RATE, frame_length=FRAME, hop_length=HOP
    )
    rms = librosa.feature.rms(y=samples, frame_length=FRAME, hop_length=HOP)[0]
    level = 20 * np.log10(np.maximum(rms, 1e-10))
    speech = level > level.max() - SPEECH_DB
    count = min(len(speech), len(voiced))
    speech, voiced, f0 = speech[:count], voiced[:count], f0[:count]
    if not speech.any():
        return 0.0, np.zeros(0)
    return float(np.mean(voiced[speech])), f0[voiced & speech]


_sessions: dict = {}


def _dnsmos_sessions() -> dict:
    """speechmos's two ONNX models, loaded once per process, on one thread each (the processes are the parallelism)."""
    if not _sessions:
        import onnxruntime
        import speechmos.dnsmos

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        models = Path(speechmos.dnsmos.__file__).parent / "dnsmos_models"
        for name, file in (("p835", "sig_bak_ovr.onnx"), ("p808", "model_v8.onnx")):
            _sessions[name] = onnxruntime.InferenceSession(
                str(models / file), options, providers=["CPUExecutionProvider"]
            )
        _sessions["scales"] = speechmos.dnsmos.DNSMOS.__new__(speechmos.dnsmos.DNSMOS)  # its two helper methods
    return _sessions


def dnsmos(samples: np.ndarray) -> dict[str, float]:
    """DNSMOS P.835 (``sig``, ``bak``, ``ovrl``) and P.808 (``p808``) of a clip at :data:`SAMPLE_RATE`.

    speechmos's own ``dnsmos.run``, on one window: it doubles a short clip
    until it fills :data:`DNSMOS_SECONDS` and averages the windows one second
    apart (seven for a one-second clip, each a shift of the same repeated
    clip); one window of the clip repeated gives the same ratings (to 0.01 on
    FSDD) at a seventh of the cost, on a thread the caller chose.
    """
    sessions = _dnsmos_sessions()
    samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    length = int(DNSMOS_SECONDS * SAMPLE_RATE)
    window = np.tile(samples, -(-length // max(1, len(samples))))[:length]
    raw = sessions["p835"].run(None, {"input_1": window[None]})[0][0]
    sig, bak, ovrl = sessions["scales"].get_polyfit_val(*raw, False)
    features = sessions["scales"].audio_melspec(audio=window[:-160])
    p808 = sessions["p808"].run(None, {"input_1": features[None].astype(np.float32)})[0][0][0]
    return {"sig": float(sig), "bak": float(bak), "ovrl": float(ovrl), "p808": float(p808)}


def pesq_wb(reference: np.ndarray, degraded: np.ndarray) -> float | None:
    """PESQ-WB of ``degraded`` against ``reference``, both at :data:`SAMPLE_RATE`; None when PESQ
    cannot rate them (a silent or too short clip)."""
    import pesq

    try:
        with np.errstate(invalid="ignore", divide="ignore"):  # it scales by the peak, 0 in a silent clip
            return float(
                pesq.pesq(SAMPLE_RATE, np.asarray(reference, np.float64), np.asarray(degraded, np.float64), "wb")
            )
    except (pesq.PesqError, ValueError):
        return None


def measure(wav: bytes, reference: bytes | None = None) -> dict:
    """Every measure of one wav file: ``voiced``, ``f0`` (the voiced frames' f0), ``f0_median``,
    ``sig``, ``bak``, ``ovrl``, ``p808`` and, given the ``reference`` it was made from, ``pesq``;
    ``problem`` instead when the file cannot be read."""
    try:
        samples = at_16k(*decode_wav(wav))
    except BadClip as err:
        return {"problem": str(err)}
    voiced, f0 = voicing(samples)
    out = {"voiced": voiced, "f0": f0.tolist(), "f0_median": float(np.median(f0)) if len(f0) else None}
    out.update(dnsmos(samples))
    if reference is not None:
        out["pesq"] = pesq_wb(at_16k(*decode_wav(reference)), samples)
    return out


def _measure(task: tuple[bytes, bytes | None]) -> dict:
    return measure(*task)


def measure_many(
    wavs: list[bytes], references: list[bytes | None] | None = None, jobs: int | None = None
) -> list[dict]:
    """:func:`measure` of each wav (against its reference, if given), on ``jobs`` spawned processes
    (by default every core the process may use); the result is the same whatever the number."""
    tasks = list(zip(wavs, references or [None] * len(wavs), strict=True))
    return list(mapped(_measure, tasks, per_process=CLIPS_PER_PROCESS, jobs=jobs))


def summarize(measures: list[dict]) -> dict:
    """A set's figures from its clips' :func:`measure`: the mean of each rating and of the voiced share,
    ``voiced_clips`` (the share of clips mostly voiced), ``f0`` (the 5th, 50th and 95th percentiles
    of every voiced frame's f0), ``pesq`` (mean, where rated) and ``clips`` (how many were measured)."""
    rated = [m for m in measures if "problem" not in m]
    out: dict = {"clips": len(rated)}
    if not rated:
        return out
    for key in ("voiced", "sig", "bak", "ovrl", "p808"):
        out[key] = float(np.mean([m[key] for m in rated]))
    out["voiced_clips"] = float(np.mean([m["voiced"] > 0.5 for m in rated]))
    f0 = np.concatenate([m["f0"] for m in rated])
    if len(f0):
        out["f0"] = [float(v) for v in np.percentile(f0, [5, 50, 95])]
    scores = [m["pesq"] for m in rated if m.get("pesq") is not None]
    if scores:
        out["pesq"] = float(np.mean(scores))
    return out
