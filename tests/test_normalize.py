"""Tests for the normalize stage's library code (speakdigits.normalize) on
hand-made feature folders in the extract stage's format (mels.npy, pitch.npy,
clips.csv, geometry.json), checked through the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speakdigits.classifier import take_split
from speakdigits.errors import PipelineError
from speakdigits.formats.features import MELS_NPY, PITCH_NPY, read_features, write_features
from speakdigits.formats.normalized import SPLITS, denormalize, load_geometry, load_split, load_stats, scale
from speakdigits.normalize import normalize
from speakdigits.params import MelParams, SplitParams
from speakdigits.pitch import to_unit

N_MELS, FRAMES = 12, 10
GEOMETRY = MelParams(
    sample_rate=8000,
    duration=0.5,
    n_mels=N_MELS,
    frames=FRAMES,
    n_fft=256,
    fmin=0,
    fmax=4000.0,
    trim_db=None,
    top_db=80,
)


def speaker_ids(n: int) -> list[str]:
    return [f"{i:02d}" for i in range(1, n + 1)]


def hand_made_features(
    folder: Path,
    speakers: list[str],
    clips_per_speaker: int = 4,
    seed: int = 0,
    offsets: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A features folder with random dB images; ``offsets`` adds dB to some speakers' clips.

    Returns the images and the speaker of each row.
    """
    rng = np.random.default_rng(seed)
    rows, owners = [], []
    for speaker in speakers:
        for take in range(clips_per_speaker):
            rows.append(
                (
                    f"{speaker}/{take % 10}_{speaker}_{take}.wav",
                    take % 10,
                    speaker,
                    take,
                    "female" if int(speaker) % 2 else "male",
                    "" if speaker == "03" else 20 + int(speaker),
                )
            )
            owners.append(speaker)
    # A per-bin level plus noise, so the bins differ in range.
    mels = rng.normal(-40, 10, size=(len(rows), N_MELS, FRAMES)) + np.linspace(-20, 0, N_MELS)[None, :, None]
    for i, speaker in enumerate(owners):
        mels[i] += (offsets or {}).get(speaker, 0.0)
    mels = mels.astype(np.float32)
    tracks = np.stack([rng.uniform(80, 300, (len(rows), FRAMES)), rng.integers(0, 2, (len(rows), FRAMES))], axis=1)
    folder.mkdir(parents=True)
    np.save(folder / MELS_NPY, mels)
    np.save(folder / PITCH_NPY, tracks.astype(np.float32))
    clips = [(*row[:5], None if row[5] == "" else row[5]) for row in rows]
    write_features(folder, clips=clips, report={}, geometry=GEOMETRY)
    return mels, np.array(owners)


def written_split(out: Path) -> dict[str, list[str]]:
    """Speakers of each split as found in the written speaker.npy files."""
    return {name: sorted(set(np.load(out / name / "speaker.npy").tolist())) for name in SPLITS}


@pytest.fixture
def features(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    folder = tmp_path / "features"
    mels, owners = hand_made_features(folder, speaker_ids(20))
    return folder, mels, owners


def test_hand_made_features_are_in_the_extract_format(features):
    folder, mels, owners = features
    read_mels, tracks, clips = read_features(folder)
    assert np.array_equal(read_mels, mels) and tracks.shape == (len(mels), 2, FRAMES)
    assert [c["speaker"] for c in clips] == owners.tolist()


def test_splits_are_speaker_disjoint_and_cover_every_clip(features, tmp_path):
    folder, mels, owners = features
    out = tmp_path / "normalized"
    summary = normalize(folder, out, split=SplitParams(val_fraction=0.15, test_fraction=0.2), seed=1)
    split = written_split(out)
    assert set(split["train"]).isdisjoint(split["val"])
    assert set(split["train"]).isdisjoint(split["test"])
    assert set(split["val"]).isdisjoint(split["test"])
    assert sorted(split["train"] + split["val"] + split["test"]) == speaker_ids(20)
    # Fractions of speakers: 0.2 * 20 = 4 test, 0.15 * 20 = 3 val, 13 train.
    assert {k: len(v) for k, v in split.items()} == {"train": 13, "val": 3, "test": 4}
    assert json.loads((out / "split.json").read_text()) == split
    assert summary == {"clips": {"train": 52, "val": 12, "test": 16}, "speakers": {"train": 13, "val": 3, "test": 4}}
    # Every clip lands in exactly the split of its speaker, with its labels and its pitch track, scaled.
    tracks = read_features(folder)[1]
    for name in SPLITS:
        data = load_split(out, name)
        assert data["x"].shape == (summary["clips"][name], N_MELS, FRAMES)
        assert data["x"].dtype == np.float32
        np.testing.assert_array_equal(data["pitch"], to_unit(tracks[np.isin(owners, split[name])]))
        assert (
            len(data["digit"])
            == len(data["speaker"])
            == len(data["take"])
            == len(data["gender"])
            == len(data["age"])
            == len(data["x"])
        )
        for speaker, digit, take, gender, age in zip(
            data["speaker"], data["digit"], data["take"], data["gender"], data["age"]
        ):
            assert gender == ("female" if int(speaker) % 2 else "male")
            assert age == (-1 if speaker == "03" else 20 + int(speaker))
            assert digit == take % 10  # clip `take` of a speaker is named `{take % 10}_{speaker}_{take}`


@pytest.mark.parametrize(
    ("n_speakers", "val", "test", "expected"),
    [
        (8, 0.25, 0.25, {"train": 4, "val": 2, "test": 2}),
        (10, 0.0, 0.3, {"train": 7, "val": 0, "test": 3}),
        (5, 0.05, 0.05, {"train": 3, "val": 1, "test": 1}),  # a share above zero gets at least one speaker
    ],
)
def test_split_fractions_are_honoured(tmp_path, n_speakers, val, test, expected):
    hand_made_features(tmp_path / "features", speaker_ids(n_speakers), clips_per_speaker=2)
    normalize(tmp_path / "features", tmp_path / "out", split=SplitParams(val_fraction=val, test_fraction=test), seed=3)
    assert {k: len(v) for k, v in written_split(tmp_path / "out").items()} == expected
    assert len(load_split(tmp_path / "out", "val")["x"]) == 2 * expected["val"]


def test_same_seed_gives_identical_files_and_another_seed_another_split(features, tmp_path):
    folder, _, _ = features
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        normalize(folder, tmp_path / name, split=SplitParams(val_fraction=0.15, test_fraction=0.2), seed=seed)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 3 * 7 + 2  # per split x, pitch and five labels; stats.json, split.json
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert written_split(tmp_path / "a") != written_split(tmp_path / "c")


def test_split_does_not_depend_on_clip_order(tmp_path):
    hand_made_features(tmp_path / "f1", speaker_ids(12))
    hand_made_features(tmp_path / "f2", list(reversed(speaker_ids(12))))
    normalize(tmp_path / "f1", tmp_path / "o1", split=SplitParams(val_fraction=0.2, test_fraction=0.2), seed=9)
    normalize(tmp_path / "f2", tmp_path / "o2", split=SplitParams(val_fraction=0.2, test_fraction=0.2), seed=9)
    assert written_split(tmp_path / "o1") == written_split(tmp_path / "o2")


def test_statistics_come_from_the_training_speakers_only(tmp_path):
    speakers = speaker_ids(10)
    # First find out which speakers the seed puts in test and val (the split ignores the images) ...
    hand_made_features(tmp_path / "probe", speakers)
    normalize(
        tmp_path / "probe", tmp_path / "probe_out", split=SplitParams(val_fraction=0.2, test_fraction=0.2), seed=11
    )
    split = written_split(tmp_path / "probe_out")
    # ... then make the test speakers 30 dB louder and the val speakers 30 dB quieter.
    offsets = {s: 30.0 for s in split["test"]} | {s: -30.0 for s in split["val"]}
    mels, owners = hand_made_features(tmp_path / "features", speakers, offsets=offsets)
    out = tmp_path / "normalized"
    normalize(tmp_path / "features", out, split=SplitParams(val_fraction=0.2, test_fraction=0.2), seed=11)
    assert written_split(out) == split

    train_rows = np.isin(owners, np.load(out / "train" / "speaker.npy"))
    want_min, want_max = mels[train_rows].min(axis=(0, 2)), mels[train_rows].max(axis=(0, 2))
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats) == {"mel_min", "mel_max", "mel"}
    assert load_geometry(out) == GEOMETRY  # the features' geometry, carried on
    np.testing.assert_array_equal(np.array(stats["mel_min"], np.float32), want_min)
    np.testing.assert_array_equal(np.array(stats["mel_max"], np.float32), want_max)
    mel_min, mel_max = load_stats(out)
    np.testing.assert_array_equal(mel_min, want_min)
    # Fitting on all the data would have given other numbers.
    assert np.all(mels.max(axis=(0, 2)) > want_max + 10)
    assert np.all(mels.min(axis=(0, 2)) < want_min - 10)

    train = np.load(out / "train" / "x.npy")
    assert np.array_equal(train.min(axis=(0, 2)), np.zeros(N_MELS, np.float32))
    assert np.array_equal(train.max(axis=(0, 2)), np.ones(N_MELS, np.float32))
    np.testing.assert_allclose(denormalize(train, mel_min, mel_max), mels[train_rows], atol=1e-3)

    # Louder test speakers and quieter val speakers are clipped into [0, 1].
    test, val = np.load(out / "test" / "x.npy"), np.load(out / "val" / "x.npy")
    for x in (test, val):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.mean(test == 1.0) > 0.2
    assert np.mean(val == 0.0) > 0.2


def test_scale_and_denormalize_round_trip():
    rng = np.random.default_rng(4)
    mels = rng.uniform(-80, 20, size=(6, N_MELS, FRAMES)).astype(np.float32)
    mel_min, mel_max = mels.min(axis=(0, 2)), mels.max(axis=(0, 2))
    scaled = scale(mels, mel_min, mel_max)
    assert scaled.dtype == np.float32 and scaled.min() == 0.0 and scaled.max() == 1.0
    np.testing.assert_allclose(denormalize(scaled, mel_min, mel_max), mels, atol=1e-3)
    # Values outside the fitted range come back clipped to it.
    outside = scale(mels + 50, mel_min, mel_max)
    np.testing.assert_allclose(denormalize(outside, mel_min, mel_max).max(axis=(0, 2)), mel_max, atol=1e-3)


def test_too_few_speakers_is_an_error_and_writes_nothing(tmp_path):
    hand_made_features(tmp_path / "features", speaker_ids(2))
    out = tmp_path / "normalized"
    with pytest.raises(PipelineError) as info:
        normalize(tmp_path / "features", out, split=SplitParams(val_fraction=0.15, test_fraction=0.2), seed=1)
    message = str(info.value)
    assert "\n" not in message
    assert "only 2 speaker(s)" in message
    assert "split.val_fraction = 0.15" in message and "split.test_fraction = 0.2" in message
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["features"]


def test_missing_features_is_a_one_line_error(tmp_path):
    with pytest.raises(PipelineError, match="run the extract stage first"):
        normalize(
            tmp_path / "nothing", tmp_path / "out", split=SplitParams(val_fraction=0.1, test_fraction=0.1), seed=0
        )
    assert not (tmp_path / "out").exists()


def test_mismatched_rows_and_images_is_an_error(tmp_path):
    hand_made_features(tmp_path / "features", speaker_ids(6))
    np.save(tmp_path / "features" / "mels.npy", np.zeros((3, N_MELS, FRAMES), np.float32))
    with pytest.raises(PipelineError, match=r"3 mel images, 24 pitch tracks and 24 rows in clips.csv; rerun the"):
        normalize(
            tmp_path / "features", tmp_path / "out", split=SplitParams(val_fraction=0.1, test_fraction=0.1), seed=0
        )


# ----------------------------------------------------------------- the judge's split by take


def roles_of(takes, fraction=0.1, speaker="a", digit=0):
    n = len(takes)
    return take_split(np.array([speaker] * n), np.full(n, digit), np.array(takes), fraction=fraction).tolist()


@pytest.mark.parametrize(("n", "test", "val"), [(1, 0, 0), (2, 1, 0), (3, 1, 1), (10, 1, 1), (50, 5, 5), (51, 5, 5)])
def test_take_split_holds_out_the_lowest_takes_and_always_trains_on_one(n, test, val):
    takes = list(reversed(range(n)))  # the order of the clips does not matter, the take numbers do
    roles = dict(zip(takes, roles_of(takes)))
    assert [t for t in range(n) if roles[t] == "test"] == list(range(test))
    assert [t for t in range(n) if roles[t] == "val"] == list(range(test, test + val))
    assert sum(r == "train" for r in roles.values()) == n - test - val >= 1


def test_take_split_deals_every_speaker_and_digit_separately():
    # FSDD's shape in small: 3 speakers x 2 digits x 20 takes, shuffled.
    rng = np.random.default_rng(4)
    clips = [(s, d, t) for s in ("jackson", "theo", "lucas") for d in (3, 7) for t in range(20)]
    clips = [clips[i] for i in rng.permutation(len(clips))]
    speakers, digits, takes = (np.array(column) for column in zip(*clips))
    roles = take_split(speakers, digits, takes, fraction=0.1)
    for speaker in ("jackson", "theo", "lucas"):
        for digit in (3, 7):
            mine = (speakers == speaker) & (digits == digit)
            assert sorted(takes[mine & (roles == "test")].tolist()) == [0, 1]
            assert sorted(takes[mine & (roles == "val")].tolist()) == [2, 3]
    assert np.array_equal(roles, take_split(speakers, digits, takes, fraction=0.1))
