"""The pitch track and the vocoders on hand-made signals: the tracker finds a tone's f0 on the mel
image's frames, the track's scaling round-trips, and the harmonic vocoder turns a smooth mel image
and a pitch track into a voice at that pitch, where Griffin-Lim makes a whisper."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.signal

from speakdigits import audio, pitch
from speakdigits.params import MelParams, mel_band_centres, mel_to_hz
from speakdigits.quality import voicing
from speakdigits.vocoder import (
    excitation,
    pitch_to_audio,
    stretch_contrast,
    synthesize,
    voicing_weight,
    with_levels,
    with_pace,
)

MEL = MelParams(
    sample_rate=16000, duration=1.0, n_mels=64, frames=64, n_fft=1024, fmin=0.0, fmax=4000.0, trim_db=None, top_db=80
)


def word(f0: float, *, start: float = 0.1, end: float = 0.6) -> np.ndarray:
    """A 'word' of harmonics of ``f0`` (falling amplitudes) from ``start`` to ``end`` seconds, silence around."""
    t = np.arange(MEL.n_samples) / MEL.sample_rate
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
    tone = np.where((t >= start) & (t < end), tone, 0.0)
    return (0.9 * tone / np.abs(tone).max()).astype(np.float32)


def test_the_track_finds_a_tones_f0_where_it_sounds_and_holds_it_through_the_silence():
    track = pitch.track(word(150.0), mel=MEL)
    assert track.shape == (2, MEL.frames) and track.dtype == np.float32
    inside = slice(round(0.15 * MEL.sample_rate / MEL.hop), round(0.55 * MEL.sample_rate / MEL.hop))
    assert np.all(track[pitch.VOICING, inside] == 1)
    np.testing.assert_allclose(track[pitch.F0, inside], 150.0, rtol=0.01)  # refined to well within a semitone
    assert np.all(track[pitch.VOICING, -10:] == 0)  # the silence after the word
    last = np.flatnonzero(track[pitch.VOICING])[-1]
    np.testing.assert_array_equal(track[pitch.F0, last:], track[pitch.F0, last])  # held, not dropped


def test_a_vowel_in_noise_is_voiced_and_noise_in_a_formants_band_is_not():
    # A noisy recording's vowel (harmonics 1 dB above white noise): pYIN with librosa's default prior
    # calls it unvoiced, as it did a third of FSDD's clips; noise shaped like one formant stays unvoiced.
    rng = np.random.default_rng(0)
    vowel = word(120.0, start=0.0, end=1.0)
    noisy = vowel / vowel.std() + rng.standard_normal(MEL.n_samples) * 10 ** (-1 / 20)
    assert pitch.track((noisy / np.abs(noisy).max()).astype(np.float32), mel=MEL)[pitch.VOICING].mean() > 0.9
    formant = scipy.signal.lfilter(
        *scipy.signal.butter(2, [300, 800], "bandpass", fs=MEL.sample_rate), rng.standard_normal(MEL.n_samples)
    )
    assert pitch.track((formant / np.abs(formant).max()).astype(np.float32), mel=MEL)[pitch.VOICING].sum() == 0


def test_unvoiced_gaps_are_bridged_in_log_frequency_and_a_voiceless_clip_gets_the_middle_of_the_range():
    f0 = np.array([np.nan, 100.0, np.nan, np.nan, 400.0, np.nan])
    voiced = np.array([False, True, False, False, True, False])
    np.testing.assert_allclose(
        pitch.continuous_f0(f0, voiced), [100, 100, 100 * 4 ** (1 / 3), 100 * 4 ** (2 / 3), 400, 400], rtol=1e-5
    )
    middle = np.sqrt(pitch.F0_MIN * pitch.F0_MAX)
    np.testing.assert_allclose(pitch.continuous_f0(f0, np.zeros(6, bool)), middle, rtol=1e-6)


def test_the_unit_scale_is_logarithmic_in_f0_and_round_trips():
    track = np.array([[pitch.F0_MIN, np.sqrt(pitch.F0_MIN * pitch.F0_MAX), pitch.F0_MAX], [0.0, 1.0, 1.0]])
    unit = pitch.to_unit(track)
    np.testing.assert_allclose(unit, [[0.0, 0.5, 1.0], [0.0, 1.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(pitch.from_unit(unit), track, rtol=1e-5)
    np.testing.assert_allclose(pitch.from_unit(np.array([[1.5], [0.2]]))[0], pitch.F0_MAX, rtol=1e-5)  # clipped


def smooth_image(level_db: float = -20.0) -> np.ndarray:
    """A mel image with no harmonics in it: a falling spectral envelope, 'speech' from frame 6 to 38."""
    image = np.full((MEL.n_mels, MEL.frames), level_db - 80, np.float32)
    image[:, 6:38] = (level_db - 0.5 * np.arange(MEL.n_mels))[:, None]
    return image


def test_the_harmonic_vocoder_voices_a_smooth_mel_at_the_pitch_of_its_track():
    track = np.stack([np.full(MEL.frames, 140.0), (np.arange(MEL.frames) >= 6) & (np.arange(MEL.frames) < 38)])
    voiced = pitch_to_audio(smooth_image(), track.astype(np.float32), mel=MEL, n_iter=16, seed=0)
    assert voiced.dtype == np.float32 and voiced.shape == (MEL.n_samples,)
    assert np.abs(voiced).max() == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    share, f0 = voicing(voiced)
    assert share > 0.8 and np.median(f0) == pytest.approx(140.0, rel=0.03)
    # The same image and track, told no frame is voiced: noise shaped like the envelope.
    whisper = pitch_to_audio(smooth_image(), track * np.array([[1.0], [0.0]], np.float32), mel=MEL, n_iter=16, seed=0)
    assert voicing(whisper)[0] < 0.2


def test_the_voice_spreads_each_period_rather_than_clicking():
    # A steady 140 Hz voice, 28 harmonics up to 4 kHz. Added up in one phase, they make a click every period,
    # a peak sqrt(2 x 28), 17.5 dB, above its RMS; peak-normalised, such a voice is that much quieter than
    # one whose energy is spread over the period, as a recording's is.
    track = np.stack([np.full(MEL.frames, 140.0), np.ones(MEL.frames)]).astype(np.float32)
    source = excitation(track, mel=MEL, rng=np.random.default_rng(0))
    assert 20 * np.log10(np.abs(source).max() / np.sqrt(np.mean(source**2))) < 8.0
    # Still harmonics of 140 Hz, each as strong as the others.
    spectrum = np.abs(np.fft.rfft(source)) ** 2
    freqs = np.fft.rfftfreq(len(source), 1 / MEL.sample_rate)
    harmonics = [spectrum[np.abs(freqs - k * 140.0) < 2].sum() for k in range(1, 29)]
    assert sum(harmonics) > 0.99 * spectrum.sum()
    assert max(harmonics) < 1.05 * min(harmonics)


def test_a_voiced_frames_harmonics_give_way_to_noise_high_up_as_much_as_asked():
    """generate.aperiodicity: below 1 kHz harmonics alone, from 2 kHz up that share of the energy is noise
    between them; the spectrum stays as flat as before, and 0 gives the same samples as harmonics alone."""
    from speakdigits.vocoder import APERIODIC_HZ, aperiodic_share

    assert APERIODIC_HZ == (1000.0, 2000.0)
    np.testing.assert_allclose(aperiodic_share([500, 1000, 1500, 2000, 3500], 0.7), [0, 0, 0.35, 0.7, 0.7])
    track = np.stack([np.full(MEL.frames, 140.0), np.ones(MEL.frames)]).astype(np.float32)
    plain = excitation(track, mel=MEL, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(excitation(track, mel=MEL, rng=np.random.default_rng(0), aperiodicity=0.0), plain)
    breathy = excitation(track, mel=MEL, rng=np.random.default_rng(0), aperiodicity=0.7)
    freqs = np.fft.rfftfreq(len(plain), 1 / MEL.sample_rate)
    on_harmonic = np.abs(freqs / 140.0 - np.round(freqs / 140.0)) * 140.0 < 2

    def noise_share(source: np.ndarray, low: float, high: float) -> float:
        spectrum = np.abs(np.fft.rfft(source)) ** 2
        band = (freqs >= low) & (freqs < high)
        return spectrum[band & ~on_harmonic].sum() / spectrum[band].sum()

    assert noise_share(plain, 2000, 3900) < 0.01
    assert noise_share(breathy, 200, 950) < 0.01
    assert noise_share(breathy, 2000, 3900) == pytest.approx(0.7, abs=0.05)
    # As much energy in each kilohertz as before: only its kind changed.
    for low in (0, 1000, 2000, 3000):
        band = (freqs >= low) & (freqs < low + 1000)
        before, after = (np.sum(np.abs(np.fft.rfft(x))[band] ** 2) for x in (plain, breathy))
        assert after == pytest.approx(before, rel=0.1)


def test_the_harmonic_vocoder_follows_the_mel_image():
    """Its clip's own mel image has the energy asked for, over time and in each kilohertz of the band
    (band by band, the harmonics and the gaps between them make ripples the smooth image lacks)."""
    track = np.stack([np.full(MEL.frames, 140.0), np.ones(MEL.frames)]).astype(np.float32)
    image = smooth_image()
    again = audio.log_mel(pitch_to_audio(image, track, mel=MEL, n_iter=32, seed=0), mel=MEL)
    speech = slice(8, 36)
    edges = np.searchsorted(mel_to_hz(mel_band_centres(n_mels=MEL.n_mels, fmin=0.0, fmax=4000.0)), [1000, 2000, 3000])

    def energy(db: np.ndarray, axis: int) -> np.ndarray:
        power = 10 ** (db[:, speech] / 10)
        if axis == 0:
            return 10 * np.log10(power.sum(axis=0))
        return 10 * np.log10([part.sum() for part in np.split(power, edges)])

    # The clip is peak-normalised: compare shapes, not levels.
    over_time = energy(again, 0) - energy(image, 0)
    assert np.ptp(over_time) < 1.5
    per_kilohertz = energy(again, 1) - energy(image, 1)
    assert np.ptp(per_kilohertz) < 2.0, per_kilohertz


def test_the_vocoders_are_deterministic_for_a_seed_and_silent_for_a_silent_image():
    track = np.stack([np.full(MEL.frames, 200.0), np.arange(MEL.frames) % 2]).astype(np.float32)  # noise too
    for vocoder in ("harmonic", "griffin_lim"):
        common = dict(mel=MEL, vocoder=vocoder, n_iter=4, momentum=0.99)
        a, b, c = (synthesize(smooth_image(), track, seed=seed, **common) for seed in (1, 1, 2))
        assert np.array_equal(a, b) and not np.array_equal(a, c), vocoder
        silent = synthesize(np.full((MEL.n_mels, MEL.frames), -np.inf, np.float32), track, seed=0, **common)
        assert np.all(silent == 0), vocoder


def test_an_images_floor_is_silence_not_a_faint_noise():
    # smooth_image's frames outside the word sit at the floor, mel.top_db below its loudest band: a
    # recording's silence, which PESQ compares with digital silence.
    track = np.stack([np.full(MEL.frames, 140.0), np.ones(MEL.frames)]).astype(np.float32)
    after = (38 + 2) * MEL.hop + MEL.n_fft  # past the last frame that a window of the word reaches
    for vocoder in ("harmonic", "griffin_lim"):
        clip = synthesize(smooth_image(), track, mel=MEL, vocoder=vocoder, n_iter=8, momentum=0.99, seed=0)
        assert np.abs(clip[after:]).max() < 1e-6 * np.abs(clip).max(), vocoder


def test_a_decoders_voicing_probability_is_sharpened():
    np.testing.assert_allclose(voicing_weight(np.array([0.0, 0.25, 0.5, 0.75, 1.0])), [0, 0, 0.5, 1, 1])


def test_mel_fmax_bounds_the_harmonics():
    narrow = dataclasses.replace(MEL, fmax=1000.0)
    track = np.stack([np.full(MEL.frames, 140.0), np.ones(MEL.frames)]).astype(np.float32)
    clip = pitch_to_audio(smooth_image(), track, mel=narrow, n_iter=8, seed=0)
    spectrum = np.abs(np.fft.rfft(clip)) ** 2
    freqs = np.fft.rfftfreq(len(clip), 1 / MEL.sample_rate)
    assert spectrum[freqs > 1500].sum() < 1e-3 * spectrum.sum()


def test_levels_raise_each_band_of_the_speech_and_the_floor_stays_silence():
    # Two bands, four frames: speech, speech, a faint hiss after it (60 dB down), the floor (80 dB down).
    image = np.array([[[-10.0, -20.0, -60.0, -80.0], [0.0, -30.0, -70.0, -80.0]]])
    raised = with_levels(image, np.array([[6.0, -3.0]]), top_db=80.0)
    np.testing.assert_allclose(raised[0, :, :2], [[-4.0, -14.0], [-3.0, -33.0]])
    np.testing.assert_allclose(raised[0, :, 2], [-60.0, -70.0])  # not speech: as it was
    # The loudest bin is now -3 dB, so the floor is -83 dB: the silent frame stays at it, not raised to noise.
    np.testing.assert_allclose(raised[0, :, 3], -83.0)
    # Nothing is lifted off the floor or pushed below it.
    assert raised.min() >= raised.max() - 80.0
    np.testing.assert_allclose(with_levels(image, np.zeros((1, 2)), top_db=80.0), image)


def test_levels_may_change_from_frame_to_frame():
    """Levels per band and frame (a voice's voiced frames get other levels than its unvoiced ones)."""
    image = np.array([[[-10.0, -20.0, -80.0], [0.0, -30.0, -80.0]]])
    levels = np.array([[[6.0, 1.0, 9.0], [-3.0, 2.0, 9.0]]])
    raised = with_levels(image, levels, top_db=80.0)
    np.testing.assert_allclose(raised[0, :, :2], [[-4.0, -19.0], [-3.0, -28.0]])
    np.testing.assert_allclose(raised[0, :, 2], -83.0)  # the floor stays the floor, below the new loudest bin
    # Levels that do not change from frame to frame raise the image as levels per band do.
    np.testing.assert_allclose(
        with_levels(image, np.repeat([[[6.0], [-3.0]]], 3, axis=2), top_db=80.0),
        with_levels(image, np.array([[6.0, -3.0]]), top_db=80.0),
    )


def test_speech_is_told_frame_by_frame_in_one_image_or_many_alike():
    """voice_detail.speech: frames whose loudest band is within 40 dB of the image's loudest bin."""
    from speakdigits.voice_detail import speech

    image = np.array([[-10.0, -45.0, -80.0, -20.0], [0.0, -39.0, -80.0, -41.0]])
    assert speech(image).tolist() == [True, True, False, True]
    images = np.stack([image, image - 30.0, np.where(image > -15.0, image, -90.0)])
    np.testing.assert_array_equal(speech(images), [speech(one) for one in images])
    assert speech(images)[2].tolist() == [True, False, False, False]


def paced_clip(frames: int = 20, onset: int = 4):
    """One image of two bands (the floor at -80 dB before ``onset``, then rising by 1 dB a frame) and its pitch
    track (f0 rising by 10 Hz a frame, voiced in every third frame from the onset)."""
    ramp = np.where(np.arange(frames) < onset, -80.0, -40.0 + np.arange(frames))
    image = np.stack([ramp, ramp - 5.0])[None]
    f0 = 100.0 + 10.0 * np.arange(frames)
    voicing = ((np.arange(frames) >= onset) & ((np.arange(frames) - onset) % 3 == 0)).astype(float)
    return image, np.stack([f0, voicing])[None]


def test_pace_says_the_speech_slower_from_its_onset_and_cuts_it_at_the_image_end():
    image, track = paced_clip()
    slow_image, slow_track = with_pace(image, track, np.array([np.log(2.0)]))
    # Before the onset (frame 4): as it was.
    np.testing.assert_array_equal(slow_image[..., :4], image[..., :4])
    np.testing.assert_array_equal(slow_track[..., :4], track[..., :4])
    # Twice as slow: frame 4 + 2k is frame 4 + k, and the frames between are halfway, bands and f0 alike.
    np.testing.assert_allclose(slow_image[0, :, 4::2], image[0, :, 4:12])
    np.testing.assert_allclose(slow_image[0, :, 5::2], (image[0, :, 4:12] + image[0, :, 5:13]) / 2)
    np.testing.assert_allclose(slow_track[0, 0, 4::2], track[0, 0, 4:12])
    np.testing.assert_allclose(slow_track[0, 0, 5::2], track[0, 0, 4:12] + 5.0)
    # Voicing from the nearest frame (halves round to even): frames 4, 7 and 10 are voiced, so the slower
    # clip's frames 4 and 5 (read at 4 and 4.5), 10 (at 7), 15, 16 and 17 (at 9.5, 10 and 10.5).
    np.testing.assert_array_equal(np.flatnonzero(slow_track[0, 1]), [4, 5, 10, 15, 16, 17])
    # The last frame reads frame 11.5: what was said after it no longer fits in the image.
    np.testing.assert_allclose(slow_image[0, :, -1], (image[0, :, 11] + image[0, :, 12]) / 2)
    # The input is left as it was.
    np.testing.assert_array_equal(image, paced_clip()[0])


def test_pace_says_the_speech_faster_and_then_it_is_silence_with_no_voice():
    image, track = paced_clip()
    fast_image, fast_track = with_pace(image, track, np.array([np.log(0.5)]))
    # Twice as fast: frame 4 + k is frame 4 + 2k, up to the image's last frame (19, reached at frame 11.5).
    np.testing.assert_allclose(fast_image[0, :, 4:12], image[0, :, 4:20:2])
    np.testing.assert_allclose(fast_track[0, 0, 4:12], track[0, 0, 4:20:2])
    # After it: the image's quietest level, unvoiced.
    np.testing.assert_array_equal(fast_image[0, :, 12:], image.min())
    np.testing.assert_array_equal(fast_track[0, 1, 12:], 0.0)
    # No change of pace (log 0): the clip as it was.
    same_image, same_track = with_pace(image, track, np.zeros(1))
    np.testing.assert_array_equal(same_image, image)
    np.testing.assert_array_equal(same_track, track)


def test_contrast_stretches_each_band_about_its_level_in_speech_and_leaves_1_alone():
    rng = np.random.default_rng(0)
    images = rng.uniform(-30, 0, (2, 8, 20))
    images[:, :, 12:] = -75.0  # silence after the word: more than 40 dB below the peak
    assert np.array_equal(stretch_contrast(images, 1.0), images)
    stretched = stretch_contrast(images, 1.5)
    speech = images[:, :, :12]
    level = speech.mean(axis=2, keepdims=True)  # each band's level over the speech frames only
    np.testing.assert_allclose(stretched[:, :, :12], level + 1.5 * (speech - level))
    np.testing.assert_allclose(stretched[:, :, :12].mean(axis=2, keepdims=True), level)  # the level is kept
    assert np.all(stretched[:, :, 12:] < images[:, :, 12:] - 20)  # the silence goes deeper
    np.testing.assert_allclose(stretched[1], stretch_contrast(images[1:], 1.5)[0])  # each clip on its own
