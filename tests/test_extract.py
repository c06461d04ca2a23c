"""Tests for the extract stage's library code (speakdigits.extraction, with
speakdigits.audio underneath): real wav files of every awkward kind packed
with speakdigits.formats.raw.write_raw, real worker processes, real memory-mapped
output; and the tolerant reading of messy speaker metadata."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from speakdigits import audio, espeak, pitch, synthetic
from speakdigits.errors import PipelineError
from speakdigits.extraction import extract, resolve_geometry
from speakdigits.formats.features import CLIP_COLUMNS, read_features, read_geometry
from speakdigits.formats.raw import write_raw
from speakdigits.params import MelParams
from speakdigits.speakers import clean_speaker_metadata
from speakdigits.wav import header_sample_rate

from conftest import REPO, TINY_PARAMS

MEL = MelParams(**{**yaml.safe_load((REPO / "params.yaml").read_text())["mel"], **TINY_PARAMS["mel"]})
SR = MEL.sample_rate


def tone(
    sr: int, f0: float = 140.0, lead: float = 0.1, dur: float = 0.5, total: float = 0.9, top: float = 4000.0
) -> np.ndarray:
    """A voiced test signal: harmonics of ``f0`` up to ``top`` Hz under a smooth envelope, peak 0.5.

    Defined in continuous time, so the same signal can be sampled at any rate.
    """
    t = np.arange(int(total * sr)) / sr
    env = np.where((t >= lead) & (t < lead + dur), np.sin(np.pi * (t - lead) / dur) ** 2, 0.0)
    harmonics = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(top / f0) + 1))
    signal = env * harmonics
    return 0.5 * signal / np.abs(signal).max()


def wav(samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, subtype=subtype, format="WAV")
    return buffer.getvalue()


def nan_wav() -> bytes:
    samples = tone(SR).astype(np.float32)
    samples[1000:1010] = np.nan
    return wav(samples, SR, subtype="FLOAT")


def spoken_digit_16k() -> bytes:
    """eSpeak NG saying 'three', resampled from 22.05 kHz to 16 kHz."""
    import librosa

    speaker = synthetic.make_speakers(1, 0)[0]
    samples = synthetic.speak_takes(speaker, [(3, 0)], seed=0, noise_db=-70.0)[0].astype(np.float32) / 32768
    return wav(librosa.resample(samples, orig_sr=espeak.sample_rate(), target_sr=16000), 16000)


GOOD = {
    "01/0_01_0.wav": lambda: wav(tone(SR), SR),  # the reference: mono, 16 bit, 22.05 kHz
    "01/1_01_0.wav": lambda: wav(np.stack([tone(SR), 0.5 * tone(SR)], axis=1), SR),  # stereo
    "02/2_02_0.wav": lambda: wav(tone(SR), SR, subtype="PCM_U8"),  # 8 bit unsigned
    "02/3_02_0.wav": lambda: wav(tone(48000), 48000),
    "03/4_03_0.wav": lambda: wav(tone(8000), 8000),
    "05/3_05_1.wav": spoken_digit_16k,
}
BAD = {
    "03/5_03_0.wav": (lambda: wav(tone(SR), SR)[:20], "unreadable"),
    "03/6_03_0.wav": (lambda: b"", "empty file"),
    "04/7_04_0.wav": (lambda: wav(np.zeros(SR), SR), "silent"),
    "04/8_04_0.wav": (nan_wav, "NaN"),
    "04/9_04_0.wav": (lambda: wav(np.zeros(0), SR), "0 samples (0 s); expected a clip of 0.1 to 30 s"),
    "hello.wav": (lambda: wav(tone(SR), SR), "name is not {digit}_{speaker}_{take}.wav"),
    # A header that says 1 Hz: 0.9 s of samples would be hours long, resampled to 7 GB before this check.
    "06/0_06_0.wav": (lambda: wav(tone(8000), 1), "sample rate 1 Hz; expected 4000 to 192000 Hz"),
    # 50 samples of background noise: not a spoken digit, however loud once peak-normalised.
    "06/1_06_0.wav": (lambda: wav(np.random.default_rng(0).normal(0, 0.01, 50), 8000), "50 samples (0.00625 s)"),
    # The same identity twice with different recordings: which is meant is unclear, so neither.
    "06/2_06_0.wav": (
        lambda: wav(tone(SR), SR),
        "2 different files share this digit, speaker and take (06/2_06_0.wav, other/2_06_0.wav); none is used",
    ),
    "other/2_06_0.wav": (lambda: wav(tone(SR, f0=200.0), SR), "2 different files share"),
    # An identical copy in another folder counts once (01/0_01_0.wav is in GOOD).
    "zcopy/0_01_0.wav": (lambda: wav(tone(SR), SR), "a copy of 01/0_01_0.wav"),
}
METADATA = {
    "1": {"gender": "Female", "age": "25"},
    "02": {"gender": "m", "age": 250},
    "03": {"gender": "MALE", "age": 31},
    "04": {"gender": "female", "age": 40},
}


@pytest.fixture(scope="module")
def odd_raw(tmp_path_factory) -> Path:
    raw_dir = tmp_path_factory.mktemp("odd") / "raw"
    members = {name: make() for name, make in GOOD.items()}
    members.update({name: make() for name, (make, _) in BAD.items()})
    write_raw(raw_dir, sorted(members.items()), METADATA, {"source": "test"})
    return raw_dir


@pytest.fixture(scope="module")
def odd_features(odd_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("odd_features") / "features"
    extract(odd_raw, out, MEL, jobs=2)
    return out


def test_broken_clips_are_skipped_with_reasons(odd_features):
    report = json.loads((odd_features / "report.json").read_text())
    reasons = {entry["file"]: entry["reason"] for entry in report["skipped"]}
    assert set(reasons) == set(BAD)
    for name, (_, expected) in BAD.items():
        assert expected in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    assert [entry["file"] for entry in report["skipped"]] == sorted(BAD)
    assert report["clips_found"] == len(GOOD) + len(BAD)
    assert report["clips_used"] == len(GOOD)
    assert report["speakers"] == 4  # 01, 02, 03, 05 (04 only has broken clips)
    assert report["shape"] == [MEL.n_mels, MEL.frames]


def test_good_clips_become_finite_mels_with_matching_rows(odd_features, odd_raw):
    assert sorted(p.name for p in odd_features.iterdir()) == [
        "clips.csv",
        "geometry.json",
        "mels.npy",
        "pitch.npy",
        "report.json",
    ]
    mels, tracks, clips = read_features(odd_features)
    assert tracks.dtype == np.float32 and tracks.shape == (len(GOOD), 2, MEL.frames)
    assert mels.dtype == np.float32
    assert mels.shape == (len(GOOD), MEL.n_mels, MEL.frames)
    assert np.all(np.isfinite(mels))
    with open(odd_features / "clips.csv", newline="") as handle:
        assert next(csv.reader(handle)) == list(CLIP_COLUMNS)
    assert [c["file"] for c in clips] == sorted(GOOD)
    for clip, mel in zip(clips, mels):
        digit, speaker, take = re.fullmatch(r"\d+/(\d)_(\d+)_(\d+)\.wav", clip["file"]).groups()
        assert (clip["digit"], clip["speaker"], clip["take"]) == (int(digit), speaker, int(take))
        # Each row holds the image of its own clip.
        np.testing.assert_allclose(mel, audio.clip_to_mel(GOOD[clip["file"]](), MEL), atol=1e-3)
        # top_db floors each image that many dB below its own maximum.
        assert mel.max() - mel.min() <= MEL.top_db + 1e-3
    by_speaker = {c["speaker"]: (c["gender"], c["age"]) for c in clips}
    assert by_speaker == {"01": ("female", 25), "02": ("male", None), "03": ("male", 31), "05": ("unknown", None)}
    # And its own pitch track, on the same frames.
    for clip, track in zip(clips, tracks):
        np.testing.assert_array_equal(track, pitch.track(audio.prepare(GOOD[clip["file"]](), MEL), mel=MEL))


def test_stereo_and_mono_of_the_same_signal_give_the_same_mel(odd_features):
    mels, _, clips = read_features(odd_features)
    rows = {c["file"]: i for i, c in enumerate(clips)}
    mono, stereo = mels[rows["01/0_01_0.wav"]], mels[rows["01/1_01_0.wav"]]
    assert np.abs(mono - stereo).max() < 0.5


def test_48k_and_22k_versions_of_the_same_signal_give_nearly_the_same_mel(odd_features):
    mels, _, clips = read_features(odd_features)
    rows = {c["file"]: i for i, c in enumerate(clips)}
    ref, resampled = mels[rows["01/0_01_0.wav"]], mels[rows["02/3_02_0.wav"]]
    diff = np.abs(ref - resampled)
    assert diff.mean() < 0.05 and diff.max() < 0.5
    # The comparison is sharp enough to tell a slightly different signal apart.
    other = audio.clip_to_mel(wav(tone(SR, f0=145.0), SR), MEL)
    assert np.abs(ref - other).max() > 0.5


def test_8_bit_and_8k_clips_keep_the_loud_part_of_the_signal(odd_features):
    mels, _, clips = read_features(odd_features)
    rows = {c["file"]: i for i, c in enumerate(clips)}

    def spectrum(image: np.ndarray) -> np.ndarray:
        """dB per mel band over the whole clip: where the 8-bit clip's noise floor moves the trimmed onset by
        a few samples, frame by frame comparisons see the shift; the spectrum does not."""
        return 10 * np.log10(np.mean(10 ** (image / 10), axis=1))

    ref = spectrum(mels[rows["01/0_01_0.wav"]])
    loud = ref > ref.max() - 30
    for name in ("02/2_02_0.wav", "03/4_03_0.wav"):
        assert np.abs(spectrum(mels[rows[name]]) - ref)[loud].mean() < 1.0, name


def test_extract_is_deterministic(odd_raw, odd_features, tmp_path):
    again = tmp_path / "features"
    extract(odd_raw, again, MEL, jobs=1)
    for name in ("mels.npy", "clips.csv"):
        assert (again / name).read_bytes() == (odd_features / name).read_bytes(), name
    # report.json is a DVC output too: it must not carry anything run-specific.
    report = (again / "report.json").read_text()
    assert not re.search(r"0x[0-9a-fA-F]{6,}", report), "report.json holds a memory address"
    assert report == (odd_features / "report.json").read_text()


def test_no_usable_clip_is_an_error_and_writes_nothing(tmp_path):
    raw_dir = tmp_path / "raw"
    write_raw(
        raw_dir,
        [("01/0_01_0.wav", b""), ("01/1_01_0.wav", wav(np.zeros(SR), SR)), ("readme.wav", wav(tone(SR), SR))],
        {},
        {"source": "test"},
    )
    out = tmp_path / "out" / "features"
    with pytest.raises(PipelineError) as info:
        extract(raw_dir, out, MEL, jobs=2)
    message = str(info.value)
    assert "\n" not in message
    assert str(raw_dir) in message and "none of the 3 clips" in message
    assert "empty file" in message and "silent" in message
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary folder left behind


def test_corrupt_member_of_the_raw_archive_is_a_one_line_error(tmp_path):
    """A damaged audio.zip is a broken pipeline output, not a bad recording: the
    stage must stop with a PipelineError naming the archive and the member."""
    raw_dir = tmp_path / "raw"
    clip = wav(tone(SR, total=0.4, dur=0.3, lead=0.05), SR)
    write_raw(raw_dir, [(f"01/{i % 10}_01_{i}.wav", clip) for i in range(30)], {}, {"source": "test"})
    archive = raw_dir / "audio.zip"
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[15]
    data = bytearray(archive.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    middle = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    archive.write_bytes(bytes(data))

    out = tmp_path / "out" / "features"
    with pytest.raises(PipelineError) as info_:
        extract(raw_dir, out, MEL, jobs=2)
    message = str(info_.value)
    assert "\n" not in message
    assert str(archive) in message and info.filename in message
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_raw_archive_is_a_one_line_error(tmp_path):
    with pytest.raises(PipelineError, match="run the download stage first"):
        extract(tmp_path / "nothing", tmp_path / "features", MEL, jobs=1)
    assert not (tmp_path / "features").exists()


def test_many_clips_stream_through_the_memmap_in_order(tmp_path):
    """200 clips with every 20th one silent: rows are compacted, in archive order."""
    raw_dir = tmp_path / "raw"
    members = []
    for i in range(200):
        name = f"{i % 7:02d}/{i % 10}_{i % 7:02d}_{i}.wav"
        signal = (
            np.zeros(4000) if i % 20 == 13 else tone(SR, f0=90.0 + 2 * i, lead=0.05, dur=0.3, total=0.4, top=2000.0)
        )
        data = wav(signal, SR)
        members.append((name, data))
    write_raw(raw_dir, members, {}, {"source": "test"})
    out = tmp_path / "features"
    report = extract(raw_dir, out, MEL, jobs=2)

    good = [(name, data) for i, (name, data) in enumerate(members) if i % 20 != 13]
    assert report["clips_used"] == len(good) == 190
    assert sorted(s["file"] for s in report["skipped"]) == sorted(n for i, (n, _) in enumerate(members) if i % 20 == 13)
    mels = np.load(out / "mels.npy")  # a plain .npy file, readable without mmap
    assert mels.shape == (190, MEL.n_mels, MEL.frames)
    _, tracks, clips = read_features(out)
    assert [c["file"] for c in clips] == [name for name, _ in good]
    for index in range(190):  # every row: the workers write each batch in its place, closed up at the end
        np.testing.assert_allclose(mels[index], audio.clip_to_mel(good[index][1], MEL), atol=1e-3)
    for index in range(0, 190, 7):  # and every pitch track beside its mel (a sample: pYIN takes its time)
        np.testing.assert_array_equal(tracks[index], pitch.track(audio.prepare(good[index][1], MEL), mel=MEL))
    # Neighbouring rows are different clips, not one image written twice.
    assert all(np.abs(mels[i] - mels[i + 1]).max() > 0.1 for i in range(189))
    assert sorted(p.name for p in out.iterdir()) == [
        "clips.csv",
        "geometry.json",
        "mels.npy",
        "pitch.npy",
        "report.json",
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # One worker writes every batch itself: the same bytes.
    extract(raw_dir, tmp_path / "one", MEL, jobs=1)
    for name in ("mels.npy", "pitch.npy"):
        assert (tmp_path / "one" / name).read_bytes() == (out / name).read_bytes(), name


# ----------------------------------------------------------------- metadata cleaning


def test_metadata_ages_as_strings_and_numbers():
    meta = {
        "01": {"gender": "male", "age": "25"},
        "02": {"gender": "female", "age": " 30 years "},
        "03": {"gender": "male", "age": 41},
        "04": {"gender": "male", "age": "52.0"},
        "05": {"gender": "female", "age": "twenty"},
        "06": {"gender": "female"},
    }
    clean, notes = clean_speaker_metadata(meta, sorted(meta))
    assert {k: v["age"] for k, v in clean.items()} == {"01": 25, "02": 30, "03": 41, "04": 52, "05": None, "06": None}
    assert notes == ["speaker 05: age 'twenty' is not a number, ignored"]


def test_metadata_impossible_age_is_ignored_with_a_note():
    clean, notes = clean_speaker_metadata(
        {"01": {"gender": "male", "age": 250}, "02": {"gender": "male", "age": "0"}}, ["01", "02"]
    )
    assert clean["01"] == {"gender": "male", "age": None}
    assert clean["02"] == {"gender": "male", "age": None}
    assert notes == ["speaker 01: impossible age 250, ignored", "speaker 02: impossible age '0', ignored"]


@pytest.mark.parametrize("age", [-1, "-1", -30])
def test_metadata_negative_age_is_called_impossible(age):
    clean, notes = clean_speaker_metadata({"01": {"gender": "male", "age": age}}, ["01"])
    assert clean["01"] == {"gender": "male", "age": None}
    assert notes == [f"speaker 01: impossible age {age!r}, ignored"]


def test_metadata_missing_speakers_and_key_spelling():
    meta = {"1": {"gender": "female", "age": 22}, "George": {"gender": "male"}, "7": "not a dict"}
    clean, notes = clean_speaker_metadata(meta, ["01", "02", "george", "07"])
    assert clean == {
        "01": {"gender": "female", "age": 22},  # key '1' matches clip speaker '01'
        "george": {"gender": "male", "age": None},  # case-insensitive names
        "02": {"gender": "unknown", "age": None},
        "07": {"gender": "unknown", "age": None},
    }
    assert notes == ["no metadata for 2 speaker(s): 02, 07"]


def test_metadata_odd_gender_strings():
    values = {
        "01": " Female ",
        "02": "F",
        "03": "woman",
        "04": "MALE",
        "05": "m",
        "06": "man",
        "07": "x",
        "08": None,
        "09": 3,
    }
    meta = {k: {"gender": v, "age": 30} for k, v in values.items()}
    clean, notes = clean_speaker_metadata(meta, sorted(values))
    assert {k: v["gender"] for k, v in clean.items()} == {
        "01": "female",
        "02": "female",
        "03": "female",
        "04": "male",
        "05": "male",
        "06": "male",
        "07": "unknown",
        "08": "unknown",
        "09": "unknown",
    }
    assert notes == [
        "speaker 07: gender 'x' not understood, taken as unknown",
        "speaker 09: gender 3 not understood, taken as unknown",
    ]


def test_metadata_extra_speakers_are_ignored():
    clean, notes = clean_speaker_metadata({"01": {"gender": "m"}, "99": {"gender": "f"}}, ["01"])
    assert clean == {"01": {"gender": "male", "age": None}}
    assert notes == []


# ----------------------------------------------------------------- the mel band of the recordings


def test_mel_fmax_null_takes_the_band_most_recordings_hold(tmp_path):
    """FSDD is recorded at 8 kHz: nothing above 4 kHz, so no mel band is spent there."""
    members = [(f"0{i % 3}/{i % 10}_0{i % 3}_{i}.wav", wav(tone(8000), 8000)) for i in range(5)]
    members.append(("09/1_09_0.wav", wav(tone(SR), SR)))  # one clip at a higher rate does not widen the band
    write_raw(tmp_path / "raw", members, {}, {"source": "test"})
    report = extract(tmp_path / "raw", tmp_path / "features", MEL, jobs=1)
    assert report["fmax"] == 4000.0
    assert read_geometry(tmp_path / "features") == dataclasses.replace(MEL, fmax=4000.0)
    # Set, it is kept: the geometry records what was asked.
    fixed = dataclasses.replace(MEL, fmax=3000.0)
    extract(tmp_path / "raw", tmp_path / "fixed", fixed, jobs=1)
    assert read_geometry(tmp_path / "fixed") == fixed


def test_resolve_geometry_caps_the_band_at_the_pipelines_own_nyquist():
    wide = resolve_geometry(MEL, [48000] * 3 + [None])
    assert wide.fmax == MEL.sample_rate / 2
    assert resolve_geometry(MEL, [8000, 8000, 22050]).fmax == 4000.0
    assert resolve_geometry(MEL, [8000, 22050]).fmax == MEL.sample_rate / 2  # a tie: the wider band
    assert resolve_geometry(MEL, []).fmax == MEL.sample_rate / 2
    with pytest.raises(PipelineError, match=r"^params.yaml: mel.fmin = 5000 is not below the band the recordings hold"):
        resolve_geometry(dataclasses.replace(MEL, fmin=5000.0), [8000])


def test_a_headers_sample_rate_is_read_from_its_first_bytes():
    data = wav(tone(SR), SR)
    assert header_sample_rate(data[:64]) == SR
    assert header_sample_rate(b"RIFF\0\0\0\0WAVE") is None  # no fmt chunk yet
    assert header_sample_rate(data[:20]) is None  # a fmt chunk cut short
    assert header_sample_rate(b"not a wav file at all") is None


def test_resolve_geometry_refuses_bands_that_hold_no_fft_bin_in_the_recordings_band():
    # 64 bands of a 256-point FFT fit 0-8 kHz, 96 do not fit FSDD's 4 kHz: triangles fall between bins.
    many = dataclasses.replace(MEL, n_mels=96, n_fft=256)
    assert resolve_geometry(dataclasses.replace(many, n_mels=64), [22050]).fmax == MEL.sample_rate / 2
    with pytest.raises(PipelineError, match=r"^params.yaml: mel.n_mels = 96 is too many for mel.n_fft = 256 in"):
        resolve_geometry(many, [8000])
