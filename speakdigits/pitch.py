"""The pitch track of a clip: its fundamental frequency and whether each frame is voiced.

A mel spectrogram holds a voice's spectral envelope well, but the VAE smooths
away the harmonics that carry its pitch, and Griffin-Lim then rebuilds noise
shaped like speech: a whisper. So the pitch is a feature of its own, tracked
here on the same frame grid as the mel image (same hop, centred frames), learnt
by the VAE beside the mel, and given back by the harmonic vocoder
(:mod:`speakdigits.vocoder`).

A track is ``2 x frames`` float32: row :data:`F0` the fundamental in Hz,
continuous (interpolated through unvoiced frames and held at the ends, so that
it is defined everywhere and the VAE learns a smooth curve), row
:data:`VOICING` 1 where the frame is voiced, else 0. The tracker is librosa's
pYIN (probabilistic YIN with an HMM over pitch and voicing), with a prior that
lets a vowel in a noisy recording be voiced, its candidates refined to a
fraction of a semitone by YIN's parabolic interpolation.
"""

from __future__ import annotations

import numpy as np

from speakdigits import librosa_kernels
from speakdigits.params import MelParams

#: The range searched, in Hz: below the lowest adult male voices, above most children's.
F0_MIN, F0_MAX = 50.0, 500.0
#: Rows of a pitch track.
F0, VOICING = 0, 1
#: pYIN's pitch grid, in semitones: 0.25 costs a quarter of librosa's default 0.1
#: (27 ms against 120 ms a clip at 16 kHz), and the refinement below recovers the precision.
_RESOLUTION = 0.25
#: pYIN's prior over YIN's threshold (a beta distribution): how aperiodic a frame may be and still be voiced.
#: librosa's default, (2, 18), expects clean studio speech. FSDD is recorded at 8 kHz with a noise floor,
#: and with that prior pYIN found a pitch in 27-49 % of the speech frames of three of the four training
#: speakers and none at all in about a third of their clips, vowels whose harmonics a spectrogram shows
#: plainly: the VAE learnt to whisper them. (1, 4) voices 56-92 % of each speaker's speech frames and
#: leaves noise unvoiced, even noise in one formant's band (300-800 Hz); (1, 3) voices such noise. On the
#: FSDD test speaker's vocoder path it raised PESQ-WB from 2.27 to 2.61 and DNSMOS OVRL from 2.45 to 2.51.
_VOICING_PRIOR = (1.0, 4.0)
#: A refined estimate further than this from pYIN's (semitones) is another dip of YIN's curve: kept out.
_REFINE_SEMITONES = 0.5


def frame_length(sample_rate: int) -> int:
    """pYIN's window: the power of two that spans at least 64 ms (three periods of :data:`F0_MIN`)."""
    return 1 << int(np.ceil(np.log2(0.064 * sample_rate)))


def track(samples: np.ndarray, *, mel: MelParams) -> np.ndarray:
    """The pitch track of a prepared clip, on the mel image's frames.

    Parameters
    ----------
    samples : numpy.ndarray
        ``mel.n_samples`` mono samples at ``mel.sample_rate``
        (:func:`speakdigits.audio.prepare`).
    mel : MelParams
        The mel geometry: its hop and frame count.

    Returns
    -------
    numpy.ndarray
        float32, ``2 x mel.frames``: f0 in Hz (continuous) and voicing (0 or 1).
    """
    import librosa  # here, not at the top: the stages that only scale tracks need not load it (2 s)

    samples = np.asarray(samples, dtype=np.float32)
    window = frame_length(mel.sample_rate)
    common = dict(sr=mel.sample_rate, frame_length=window, hop_length=mel.hop, center=True, pad_mode="constant")
    librosa_kernels.ready()
    f0, voiced, _ = librosa.pyin(
        samples, fmin=F0_MIN, fmax=F0_MAX, resolution=_RESOLUTION, beta_parameters=_VOICING_PRIOR, **common
    )
    fine = librosa.yin(samples, fmin=F0_MIN, fmax=F0_MAX, **common)
    f0, voiced, fine = f0[: mel.frames], voiced[: mel.frames], fine[: mel.frames]
    ratio = np.divide(fine, f0, out=np.ones_like(fine), where=voiced)
    f0 = np.where(voiced & (np.abs(12 * np.log2(ratio)) < _REFINE_SEMITONES), fine, f0)
    out = np.zeros((2, mel.frames), dtype=np.float32)
    out[F0, : len(f0)] = continuous_f0(f0, voiced)
    out[F0, len(f0) :] = out[F0, len(f0) - 1] if len(f0) else np.sqrt(F0_MIN * F0_MAX)
    out[VOICING, : len(voiced)] = voiced
    return out


def continuous_f0(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """f0 defined in every frame: voiced frames as tracked, the rest interpolated (in log frequency)
    between their voiced neighbours and held at the ends; a clip with no voiced frame gets the
    geometric middle of the range."""
    frames = np.flatnonzero(voiced)
    if frames.size == 0:
        return np.full(len(f0), np.sqrt(F0_MIN * F0_MAX), dtype=np.float32)
    log_f0 = np.interp(np.arange(len(f0)), frames, np.log(f0[frames]))
    return np.exp(log_f0).astype(np.float32)


def to_unit(pitch: np.ndarray) -> np.ndarray:
    """Pitch tracks (``... x 2 x frames``, Hz and 0/1) in [0, 1]: f0 on a log scale over [F0_MIN, F0_MAX]."""
    pitch = np.asarray(pitch, dtype=np.float32)
    out = pitch.copy()
    f0 = np.clip(pitch[..., F0, :], F0_MIN, F0_MAX)
    out[..., F0, :] = np.log(f0 / F0_MIN) / np.log(F0_MAX / F0_MIN)
    return out.astype(np.float32)


def from_unit(unit: np.ndarray) -> np.ndarray:
    """Undo :func:`to_unit` (values clipped to [0, 1] first): f0 in Hz, voicing as given."""
    unit = np.clip(np.asarray(unit, dtype=np.float32), 0.0, 1.0)
    out = unit.copy()
    out[..., F0, :] = F0_MIN * np.exp(unit[..., F0, :] * np.log(F0_MAX / F0_MIN))
    return out.astype(np.float32)
