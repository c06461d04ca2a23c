"""How clips sound, measured on hand-made signals with known answers: pYIN's voiced share tells a
voice from a whisper, DNSMOS and PESQ-WB rate what they should, and the MFCC judge's front end
hears the audio without ever reading the pipeline's features."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from speakdigits import audio, mfcc, wav
from speakdigits.quality import SAMPLE_RATE, at_16k, dnsmos, measure, measure_many, pesq_wb, summarize, voicing

RATE = SAMPLE_RATE
FORMANTS = ((500, 80), (1500, 120), (2500, 160))  # Hz and bandwidth: a neutral vowel


def formant_filter(source: np.ndarray) -> np.ndarray:
    """``source`` through three resonances (a vocal tract saying a neutral vowel), in a 0.5 s word."""
    out = source
    for freq, width in FORMANTS:
        radius = np.exp(-np.pi * width / RATE)
        out = scipy.signal.lfilter([1 - radius], [1, -2 * radius * np.cos(2 * np.pi * freq / RATE), radius**2], out)
    envelope = np.zeros(len(out))
    word = slice(int(0.1 * RATE), int(0.6 * RATE))
    envelope[word] = np.hanning(word.stop - word.start) ** 0.3
    out = out * envelope
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


def voiced_vowel(f0: float = 120.0) -> np.ndarray:
    pulses = np.zeros(RATE)
    pulses[:: int(RATE / f0)] = 1.0
    return formant_filter(pulses)


def whispered_vowel() -> np.ndarray:
    return formant_filter(np.random.default_rng(0).standard_normal(RATE))


def test_a_harmonic_tone_with_a_formant_envelope_is_voiced_and_the_same_envelope_on_noise_is_not():
    share, f0 = voicing(voiced_vowel(120.0))
    assert share > 0.8
    assert np.median(f0) == pytest.approx(RATE / int(RATE / 120.0), rel=0.02)
    share, f0 = voicing(whispered_vowel())
    assert share < 0.1 and len(f0) < 0.1 * 50


def test_a_silent_clip_has_no_speech_frames():
    assert voicing(np.zeros(RATE, np.float32)) == (0.0, pytest.approx(np.zeros(0)))


def test_dnsmos_rates_a_voice_above_a_whisper_and_within_its_scale():
    voice, whisper = dnsmos(voiced_vowel()), dnsmos(whispered_vowel())
    assert set(voice) == {"sig", "bak", "ovrl", "p808"}
    for ratings in (voice, whisper):
        assert all(1.0 <= value <= 5.0 for value in ratings.values()), ratings
    assert voice["sig"] > whisper["sig"]
    assert dnsmos(voiced_vowel()) == voice  # the same clip, the same ratings


def test_pesq_of_a_clip_against_itself_is_the_top_of_the_scale_and_falls_with_noise():
    clip = voiced_vowel()
    noisy = clip + 0.05 * np.random.default_rng(1).standard_normal(len(clip)).astype(np.float32)
    assert pesq_wb(clip, clip) > 4.5
    assert pesq_wb(clip, noisy) < pesq_wb(clip, clip) - 1
    assert pesq_wb(np.zeros(RATE), np.zeros(RATE)) is None  # nothing to rate: no speech


def test_measures_of_wav_files_at_any_rate_and_their_summary():
    clips = [wav.wav_bytes(at_16k(voiced_vowel(), RATE), RATE), wav.wav_bytes(whispered_vowel(), RATE)]
    clips.append(wav.wav_bytes(scipy.signal.resample_poly(voiced_vowel(), 11, 8).astype(np.float32), 22000))
    clips.append(b"not a wav")
    measures = [measure(wav, reference=clips[0] if i == 2 else None) for i, wav in enumerate(clips)]
    assert measures[0]["voiced"] > 0.8 and measures[1]["voiced"] < 0.1
    assert "pesq" not in measures[0] and measures[2]["pesq"] > 3.0  # resampled, still the same vowel
    assert set(measures[3]) == {"problem"}
    assert measure_many(clips, [None, None, clips[0], None], jobs=1) == measures
    total = summarize(measures)
    assert total["clips"] == 3 and total["voiced_clips"] == pytest.approx(2 / 3)
    assert total["voiced"] == pytest.approx(np.mean([m["voiced"] for m in measures[:3]]))
    assert total["pesq"] == measures[2]["pesq"] and len(total["f0"]) == 3
    assert summarize([]) == {"clips": 0}


def test_measures_are_the_same_on_one_process_or_two():
    clips = [wav.wav_bytes(voiced_vowel(f0), RATE) for f0 in np.linspace(100, 220, 16)]
    assert measure_many(clips, jobs=1) == measure_many(clips, jobs=2)


# ----------------------------------------------------------------- the MFCC judge's front end


def test_the_mfcc_front_end_never_reads_the_pipelines_features(monkeypatch):
    """The second judge hears the audio itself: with the pipeline's log-mel and mel filters broken,
    its features are the same."""
    clip = voiced_vowel()
    before = mfcc.front_end(clip, RATE)

    def broken(*args, **kwargs):
        raise AssertionError("the MFCC judge read the pipeline's features")

    for name in (
        "log_mel",
        "mel_filters",
        "clip_to_mel",
        "prepare",
        "trim_normalize_pad",
        "trim_bounds",
        "power_to_db",
    ):
        monkeypatch.setattr(audio, name, broken)
    np.testing.assert_array_equal(mfcc.front_end(clip, RATE), before)
    assert before.shape == (mfcc.FRAMES, mfcc.N_MFCC) and before.dtype == np.float32


def test_the_mfcc_front_end_ignores_level_and_leading_silence():
    clip = voiced_vowel()
    # Silence of six of librosa's trimming hops (512 samples): the trimmed clips start at the same sample.
    quiet_and_late = np.concatenate([np.zeros(6 * 512, np.float32), 0.1 * clip])
    late, first = mfcc.front_end(quiet_and_late, RATE), mfcc.front_end(clip, RATE)
    np.testing.assert_allclose(late, first, rtol=1e-4, atol=1e-2)  # as the speaker judge hears them
    heard = mfcc.per_clip_normalised(first)  # as the digit judge hears them: each coefficient's level removed
    np.testing.assert_allclose(mfcc.per_clip_normalised(late), heard, atol=1e-3)
    np.testing.assert_allclose(heard.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(heard.std(axis=0)[first.std(axis=0) > 1e-3], 1, atol=1e-3)
    assert mfcc.hear([b"junk", wav.wav_bytes(np.zeros(RATE, np.float32), RATE)]) == [
        "unreadable (Format not recognised.)",
        "silent",
    ]
