"""Tests for the synthetic eSpeak NG data set: speakdigits.synthetic, the
determinism of speakdigits.espeak, and acquire.synthesize writing the raw
archive.  Real eSpeak NG throughout (bundled by espeakng-loader, offline)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import espeakng_loader
import numpy as np
import pytest
import soundfile as sf

from speakdigits import acquire, espeak, synthetic
from speakdigits.formats.raw import AUDIO_ZIP, SOURCE_JSON, SPEAKERS_JSON

from conftest import REPO, tool_env

SEED = 42


def declared_gender(variant: str) -> str:
    """The gender a variant file in eSpeak NG's data declares, read here independently."""
    path = Path(espeakng_loader.get_data_path()) / "voices" / "!v" / variant
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if words and words[0] == "gender":
            return words[1].lower()
    return "unknown"


# ----------------------------------------------------------------- speakers


def test_speakers_are_distinct_voices():
    speakers = synthetic.make_speakers(250, SEED)
    assert [s.speaker_id for s in speakers[:3]] == ["001", "002", "003"]
    assert len({s.speaker_id for s in speakers}) == 250
    voices = [(s.accent, s.variant, s.pitch, s.rate) for s in speakers]
    assert len(set(voices)) == len(voices)
    # Accent/variant pairs are all used once (216 of them) before any repeats.
    pairs = [(s.accent, s.variant) for s in speakers]
    n_pairs = len(synthetic.ACCENTS) * len(synthetic.VARIANTS)
    assert n_pairs == 216
    assert len(set(pairs[:n_pairs])) == n_pairs
    for s in speakers:
        assert s.accent in synthetic.ACCENTS and s.variant in synthetic.VARIANTS
        assert 20 <= s.pitch <= 80 and 120 <= s.rate <= 190


def test_small_sets_use_distinct_accent_variant_pairs_and_zero_padded_ids():
    speakers = synthetic.make_speakers(12, SEED)
    assert [s.speaker_id for s in speakers] == [f"{i:02d}" for i in range(1, 13)]
    assert len({(s.accent, s.variant) for s in speakers}) == 12
    assert len({s.voice for s in speakers}) == 12


def test_speakers_depend_on_the_seed_only():
    assert synthetic.make_speakers(10, SEED) == synthetic.make_speakers(10, SEED)
    assert synthetic.make_speakers(10, SEED) != synthetic.make_speakers(10, SEED + 1)
    # The first speakers do not change when more are asked for.
    assert synthetic.make_speakers(10, SEED)[:5] == synthetic.make_speakers(5, SEED)


def test_every_variant_declares_a_gender_and_metadata_matches_it():
    for variant in synthetic.VARIANTS:
        assert declared_gender(variant) in ("female", "male"), variant
        assert espeak.voice_variant(variant).gender == declared_gender(variant)
    speakers = synthetic.make_speakers(40, SEED)
    assert {s.gender for s in speakers} == {"female", "male"}
    for s in speakers:
        meta = synthetic.speaker_metadata(s)
        assert meta["gender"] == declared_gender(s.variant), s
        assert meta["voice"] == f"{s.accent}+{s.variant}"


def test_variant_age_comes_from_the_variant_file():
    # grandma declares "gender female 90" in eSpeak NG's data, f3 declares no age.
    assert espeak.voice_variant("grandma").age == 90
    assert espeak.voice_variant("f3").age is None
    speaker = synthetic.Speaker("01", "en", "grandma", "female", 90, 50, 150)
    assert synthetic.speaker_metadata(speaker)["age"] == 90
    assert "age" not in synthetic.speaker_metadata(synthetic.Speaker("02", "en", "f3", "female", None, 50, 150))


# ----------------------------------------------------------------- takes


def test_takes_differ_and_same_arguments_give_identical_samples():
    speaker = synthetic.make_speakers(3, SEED)[1]
    first = synthetic.speak_takes(speaker, [(7, 0)], seed=SEED, noise_db=-60.0)[0]
    again = synthetic.speak_takes(speaker, [(7, 0)], seed=SEED, noise_db=-60.0)[0]
    other_take = synthetic.speak_takes(speaker, [(7, 1)], seed=SEED, noise_db=-60.0)[0]
    other_seed = synthetic.speak_takes(speaker, [(7, 0)], seed=SEED + 1, noise_db=-60.0)[0]
    assert first.dtype == np.int16
    assert np.array_equal(first, again)
    assert not np.array_equal(first[: len(other_take)], other_take[: len(first)])
    assert not np.array_equal(first[: len(other_seed)], other_seed[: len(first)])


def test_espeak_output_does_not_depend_on_what_was_spoken_before():
    args = dict(voice="en-us+f3", rate=150, pitch=50, seed=7)
    alone = espeak.speak("seven", **args)
    espeak.speak("a long sentence that changes the synthesiser state", voice="en+m3", rate=200, pitch=20, seed=1)
    espeak.speak("nine", voice="en-029+Andy", rate=120, pitch=80, seed=99)
    assert np.array_equal(espeak.speak("seven", **args), alone)


def test_a_sequence_spoken_again_gives_identical_samples_for_each_utterance():
    sequence = [
        espeak.Utterance("seven", "en-us+f3", 150, 50, 50, 7),
        espeak.Utterance("two", "en+m3", 180, 30, 40, 8),
        espeak.Utterance("seven", "en-us+f3", 150, 50, 50, 7),
    ]
    first = espeak.speak_sequence(sequence)
    espeak.speak("a long sentence that changes the synthesiser state", voice="en+m3", rate=200, pitch=20, seed=1)
    again = espeak.speak_sequence(sequence)
    assert len(first) == 3 and all(len(samples) > 1000 for samples in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    # The sequence starts from the fresh state, so its first utterance is the one spoken alone.
    assert np.array_equal(first[0], espeak.speak("seven", voice="en-us+f3", rate=150, pitch=50, seed=7))


_HASH_SNIPPET = """
import hashlib, sys
from speakdigits import espeak, synthetic
espeak.speak("eight", voice="en+m2", rate=170, pitch=30, seed=5)  # disturb the state first
speaker = synthetic.make_speakers(3, {seed})[2]
samples = synthetic.speak_takes(speaker, [(4, 3)], seed={seed}, noise_db=-50.0)[0]
print(hashlib.sha256(samples.tobytes()).hexdigest())
"""


def test_same_take_is_byte_identical_in_a_separate_process():
    result = subprocess.run(
        [sys.executable, "-c", _HASH_SNIPPET.format(seed=SEED)],
        cwd=REPO,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    speaker = synthetic.make_speakers(3, SEED)[2]
    here = synthetic.speak_takes(speaker, [(4, 3)], seed=SEED, noise_db=-50.0)[0]
    assert result.stdout.strip() == hashlib.sha256(here.tobytes()).hexdigest()


# ----------------------------------------------------------------- audible speech


def voiced_extent(samples: np.ndarray, sr: int, noise_rms: float) -> float:
    """Seconds from the first to the last 10 ms frame at least 20 dB above the noise."""
    frame = sr // 100
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(rms > 10 * noise_rms)
    return 0.0 if len(loud) == 0 else (loud[-1] - loud[0] + 1) / 100


def periodicity(samples: np.ndarray, sr: int) -> tuple[float, float]:
    """(best normalised autocorrelation, its pitch in Hz) over 60-400 Hz, in the loudest 40 ms."""
    win = int(0.04 * sr)
    energy = np.convolve(samples**2, np.ones(win), mode="valid")
    start = int(np.argmax(energy))
    seg = samples[start : start + win] - samples[start : start + win].mean()
    lags = np.arange(sr // 400, sr // 60)
    corr = [
        np.dot(seg[:-lag], seg[lag:]) / np.sqrt(np.dot(seg[:-lag], seg[:-lag]) * np.dot(seg[lag:], seg[lag:]))
        for lag in lags
    ]
    best = int(np.argmax(corr))
    return float(corr[best]), sr / lags[best]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_takes_are_audible_voiced_speech(index):
    sr = espeak.sample_rate()
    assert sr == 22050
    speaker = synthetic.make_speakers(3, SEED)[index]
    noise_db = -60.0
    for digit in range(10):
        clip = synthetic.speak_takes(speaker, [(digit, 0)], seed=SEED, noise_db=noise_db)[0].astype(np.float64) / 32768
        length = len(clip) / sr
        assert 0.3 <= length <= 3.0, (speaker.voice, digit, length)
        # The first 20 ms are always lead-in: background noise only, at the asked level.
        noise_rms = float(np.sqrt(np.mean(clip[: int(0.02 * sr)] ** 2)))
        assert 10 ** (noise_db / 20) / 2 < noise_rms < 10 ** (noise_db / 20) * 2
        peak = float(np.abs(clip).max())
        assert peak > 0.2, (speaker.voice, digit, peak)
        assert 20 * np.log10(peak / noise_rms) > 40, (speaker.voice, digit)
        extent = voiced_extent(clip, sr, noise_rms)
        assert 0.15 <= extent <= 1.5, (speaker.voice, digit, extent)
        corr, pitch = periodicity(clip, sr)
        assert corr > 0.5, (speaker.voice, digit, corr, pitch)


def test_raw_espeak_speech_length():
    sr = espeak.sample_rate()
    for word in synthetic.DIGIT_WORDS:
        samples = espeak.speak(word, voice="en-us+m1", rate=150, pitch=50)
        assert 0.3 <= len(samples) / sr <= 3.0, word
        assert np.abs(samples.astype(np.int32)).max() > 3000, word


# ----------------------------------------------------------------- the raw archive


def test_synthesize_is_byte_identical_and_audiomnist_shaped(tmp_path):
    # Different worker counts: the archive must not depend on scheduling.
    count_a = acquire.synthesize(tmp_path / "a", speakers=3, takes=1, noise_db=-60.0, seed=SEED, jobs=2)
    count_b = acquire.synthesize(tmp_path / "b", speakers=3, takes=1, noise_db=-60.0, seed=SEED, jobs=1)
    assert count_a == count_b == 30
    zip_a = (tmp_path / "a" / AUDIO_ZIP).read_bytes()
    assert zip_a == (tmp_path / "b" / AUDIO_ZIP).read_bytes()
    assert (tmp_path / "a" / SPEAKERS_JSON).read_bytes() == (tmp_path / "b" / SPEAKERS_JSON).read_bytes()

    with zipfile.ZipFile(io.BytesIO(zip_a)) as archive:
        names = archive.namelist()
        assert len(names) == 30
        assert len(set(names)) == 30
        expected = {f"{spk:02d}/{digit}_{spk:02d}_0.wav" for spk in (1, 2, 3) for digit in range(10)}
        assert set(names) == expected
        for name in names:
            assert re.fullmatch(r"(\d{2})/\d_\1_0\.wav", name), name
            samples, sr = sf.read(io.BytesIO(archive.read(name)), dtype="int16")
            assert sr == 22050 and samples.ndim == 1 and len(samples) >= sr

    speakers = json.loads((tmp_path / "a" / SPEAKERS_JSON).read_text())
    assert sorted(speakers) == ["01", "02", "03"]
    for sid, entry in speakers.items():
        variant = entry["voice"].split("+")[1]
        assert entry["gender"] == declared_gender(variant), sid
    source = json.loads((tmp_path / "a" / SOURCE_JSON).read_text())
    assert source["clips"] == 30 and source["source"] == "synthetic" and source["sample_rate"] == 22050


def test_synthesize_with_another_seed_differs(tmp_path):
    acquire.synthesize(tmp_path / "a", speakers=3, takes=1, noise_db=-60.0, seed=SEED, jobs=2)
    acquire.synthesize(tmp_path / "b", speakers=3, takes=1, noise_db=-60.0, seed=SEED + 1, jobs=2)
    with zipfile.ZipFile(tmp_path / "a" / AUDIO_ZIP) as a, zipfile.ZipFile(tmp_path / "b" / AUDIO_ZIP) as b:
        assert a.namelist() == b.namelist()
        assert all(a.read(name) != b.read(name) for name in a.namelist())
