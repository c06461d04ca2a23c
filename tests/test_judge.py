"""The judges' metrics on constructed cases with known answers (pure NumPy, no
model): inception score, Fréchet distance, the judge's reliability flag, the
sanity rule that calls out a judge flattering the generator, the novelty check
that catches a generator replaying its training clips, and the choice of
reference clips for the vocoder ceiling."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from speakdigits.classifier import Verdicts
from speakdigits.evaluation import (
    conversion_judges,
    digits_evenly,
    digits_in_turn,
    f0_range,
    flattery,
    judge_reliability,
    reference_candidates,
    take_groups,
    unheard,
)
from speakdigits.judge import accuracy, class_histogram, frechet_distance, inception_score, mean_confidence, summary
from speakdigits.listening import headline, sound_rows, voice_headline, warnings
from speakdigits.novelty import nearest_distances, novelty
from speakdigits.pitch import to_unit

# ----------------------------------------------------------------- inception score


def test_a_uniform_predictor_scores_one():
    assert inception_score(np.full((50, 10), 0.1)) == pytest.approx(1.0)


def test_sure_verdicts_spread_evenly_over_ten_classes_score_ten():
    probs = np.tile(np.eye(10), (3, 1))  # 30 clips, 3 of each digit, each verdict certain
    assert inception_score(probs) == pytest.approx(10.0)


def test_sure_verdicts_all_of_one_class_score_one():
    probs = np.zeros((20, 10))
    probs[:, 4] = 1.0
    assert inception_score(probs) == pytest.approx(1.0)


def test_sure_verdicts_over_k_classes_score_k():
    probs = np.tile(np.eye(10)[:4], (5, 1))  # only digits 0-3, evenly
    assert inception_score(probs) == pytest.approx(4.0)


def test_identical_unsure_verdicts_score_one_whatever_their_shape():
    row = np.array([0.5, 0.3, 0.2] + [0.0] * 7)
    assert inception_score(np.tile(row, (8, 1))) == pytest.approx(1.0)


def test_inception_score_matches_its_definition_on_a_mixed_case():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    marginal = probs.mean(axis=0)
    expected = np.exp(np.mean([np.sum(p * np.log(p / marginal)) for p in probs]))
    assert inception_score(probs) == pytest.approx(expected)
    assert 1.0 < inception_score(probs) < 2.0


# ----------------------------------------------------------------- Fréchet distance


def test_frechet_distance_of_a_set_with_itself_is_zero():
    emb = np.random.default_rng(0).normal(size=(200, 8))
    assert frechet_distance(emb, emb) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20000, 4))
    shift = np.array([3.0, 0.0, -1.0, 2.0])
    b = rng.normal(size=(20000, 4)) + shift
    assert frechet_distance(a, b) == pytest.approx(float(shift @ shift), rel=0.02)


def test_frechet_distance_sees_a_change_of_spread():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(20000, 3))
    b = 2.0 * rng.normal(size=(20000, 3))
    # Same means; covariances I and 4I: tr(I + 4I - 2 * 2I) = 3 * (1 + 4 - 4) = 3.
    assert frechet_distance(a, b) == pytest.approx(3.0, rel=0.03)


@pytest.mark.parametrize("n", [1, 2, 5])
def test_frechet_distance_stays_finite_and_real_with_fewer_clips_than_dimensions(n):
    rng = np.random.default_rng(3)
    value = frechet_distance(rng.normal(size=(n, 64)), rng.normal(size=(300, 64)))
    assert np.isfinite(value) and value > 0


# ----------------------------------------------------------------- histogram, accuracy, confidence


def test_histogram_accuracy_and_confidence():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.4, 0.5, 0.1], [0.6, 0.3, 0.1]])
    assert class_histogram(probs) == [2, 2, 0]
    assert accuracy(probs, [0, 1, 0, 0]) == pytest.approx(0.75)
    assert mean_confidence(probs) == pytest.approx((0.7 + 0.8 + 0.5 + 0.6) / 4)


def test_summary_of_a_perfect_balanced_judge():
    probs = np.tile(np.eye(10), (2, 1))
    out = summary(probs, np.tile(np.arange(10), 2))
    assert out["accuracy"] == 1.0 and out["clips"] == 20
    assert out["inception_score"] == pytest.approx(10.0)
    assert out["mean_confidence"] == 1.0
    assert "class_histogram" not in out  # the generated set's alone (evaluate adds it)


def test_an_unjudgeable_clip_counts_as_wrong():
    # Three clips; the middle one could not be judged (silent), the other two are right.
    heard = Verdicts(np.array([np.eye(10)[3], np.eye(10)[5]]), [0, 2], [None, "silent", None])
    verdicts, confidence = heard.per_clip()
    assert verdicts.tolist() == [3, -1, 5] and confidence.tolist() == [1.0, 0.0, 1.0]
    assert heard.accuracy([3, 4, 5]) == pytest.approx(2 / 3)
    assert Verdicts(np.zeros((0, 10)), [], []).accuracy([]) is None


def headline_metrics() -> dict:
    return {
        "judge": judge_reliability(0.983, holdout_takes=0.1, trusted_accuracy=0.97),
        "judges": {
            "mel": {"accuracy": 0.983, "real": 0.985, "generated": 0.9, "flatters": False},
            "mfcc": {"accuracy": 0.99, "real": 0.95, "generated": 0.97, "flatters": True, "warning": "FLATTERS: ..."},
        },
        "generated": {
            "conditional": True,
            "accuracy": 0.9,
            "accuracy_mel": 0.9,
            "accuracy_mfcc": 0.97,
            "inception_score": 7.25,
            "mean_confidence": 0.8,
            "frechet_distance": 12.5,
            "class_histogram": {"0": 3, "1": 1},
            "sound": {"clips": 2, "voiced": 0.6, "f0": [100.0, 150.0, 200.0], "sig": 2.5, "ovrl": 2.1},
            "f0_in_range": 0.98,
        },
        "real": {"clips": 400, "accuracy": 0.985, "accuracy_mfcc": 0.95, "inception_score": 9.7, "sound": {}},
        "vocoder_ceiling": {
            "clips": 20,
            "accuracy": 0.95,
            "real_accuracy_same_clips": 1.0,
            "sound": {"clips": 20, "pesq": 3.1},
        },
        "vae": {"reconstruction_mse": 0.007, "judge_accuracy_mel": 0.99, "sound": {}},
        "novelty": {"generated_nearest_train": 0.1, "unheard_nearest_train": 0.125, "ratio": 0.8, "copies": 0.02},
        "training_f0": [80.0, 240.0],
    }


def test_headline_formats_every_metric():
    metrics = headline_metrics()
    rows = dict(headline(metrics))
    assert headline(metrics)[0] == (
        "The digit judge (log-mel) itself: accuracy on real takes it never heard (every speaker)",
        "98.3 % — trusted",
    )
    assert any(value.startswith("0.1 / 0.125 (ratio 0.8;") for value in rows.values())
    assert rows["Generated: share that says the digit asked for (the lower of the two judges)"] == "90.0 %"
    assert rows["Generated: digit judge / MFCC judge"] == "90.0 % / 97.0 % — the mfcc judge flatters"
    assert rows["Generated: inception score (digit judge; higher is better, 10 at most)"] == "7.25"
    assert rows["Generated: judge's verdicts, digit: count"] == "0: 3, 1: 1"
    assert rows["Generated: voiced frames with f0 within the training speakers' range (80 – 240 Hz)"] == "98.0 %"
    assert rows["Real test-speaker clips the judges never heard (400): digit judge / MFCC judge"] == "98.5 % / 95.0 %"
    assert any(value.startswith("95.0 % / – (same clips as prepared: 100.0 % / –)") for value in rows.values())
    # A metric that could not be measured shows as a dash, not as an error.
    assert rows["VAE reconstructions vocoded (reference clips): digit judge / MFCC judge"] == "– / –"
    metrics["generated"]["conditional"] = False
    assert "Generated: digit judge / MFCC judge" not in dict(headline(metrics))
    metrics["judge"] = judge_reliability(0.688, holdout_takes=0.1, trusted_accuracy=0.97)
    assert headline(metrics)[0][1] == "68.8 % — UNRELIABLE (needs 97.0 %)"


def test_the_sound_table_has_a_row_per_set_and_dashes_for_what_was_not_measured():
    rows = sound_rows(headline_metrics())
    assert [row[0] for row in rows] == [
        "generated (2)",
        "real (test speakers, as prepared) (0)",
        "vocoder ceiling (20)",
        "VAE reconstructions, vocoded (0)",
    ]
    assert rows[0][:4] == ["generated (2)", "60.0 %", "100 – 150 – 200", "2.5"]
    assert rows[2][-1] == "3.1" and rows[1][1:] == ["–"] * 7


# ----------------------------------------------------------------- the sanity rule


def test_a_judge_hearing_generated_clips_better_than_real_speech_is_called_a_flatterer():
    out = flattery("digit judge", generated=0.99, real=0.94)
    assert out["flatters"] is True
    assert out["warning"].startswith("FLATTERS: the digit judge hears the generated clips better (99.0 %) than real")
    assert "not how well a listener would hear them" in out["warning"]
    json.dumps(out)


@pytest.mark.parametrize(("generated", "real"), [(0.94, 0.94), (0.9, 0.98), (None, 0.9), (0.9, None)])
def test_a_judge_hearing_generated_clips_no_better_than_real_speech_is_not(generated, real):
    assert flattery("MFCC judge", generated=generated, real=real) == {"flatters": False}


def test_judges_that_hear_conversions_better_than_real_speech_are_called_flatterers_of_them():
    voices = {"converted": 0.97, "converted_mel": 0.97, "converted_mfcc": 0.99, "converted_clips": 180}
    judges = conversion_judges(voices, {"accuracy": 0.98, "accuracy_mfcc": 0.96})["judges"]
    assert judges["mel"] == {"flatters": False}
    assert judges["mfcc"]["flatters"] is True
    assert judges["mfcc"]["warning"].startswith(
        "FLATTERS: the MFCC judge hears the converted clips better (99.0 %) than real recordings of the test speakers"
    )
    metrics = {"judge": {}, "judges": {"mel": {}, "mfcc": {}}, "voices": voices | {"judges": judges}}
    assert warnings(metrics) == [judges["mfcc"]["warning"]]
    assert voice_headline(metrics["voices"])[0][1] == "97.0 % (97.0 % / 99.0 %) — the mfcc judge flatters"
    # Nothing converted (voice_clips 0, or an unconditional model): nothing to flatter.
    assert conversion_judges({"available": False}, {"accuracy": 0.98}) == {}


def test_the_training_speakers_f0_range_counts_voiced_frames_only():
    hz = np.array([[100.0, 200.0, 400.0, 50.0]])
    voiced = np.array([[1.0, 1.0, 1.0, 0.0]])
    tracks = to_unit(np.stack([hz, voiced], axis=1))  # one clip, four frames; the unvoiced one at 50 Hz
    low, high = f0_range(tracks, low=0, high=100)
    assert low == pytest.approx(100.0, rel=1e-4) and high == pytest.approx(400.0, rel=1e-4)
    assert f0_range(to_unit(np.stack([hz, 0 * voiced], axis=1))) == []


# ----------------------------------------------------------------- the judge's own accuracy


def test_a_judge_below_the_bar_is_reported_unreliable_in_plain_words():
    weak = judge_reliability(0.688, holdout_takes=0.1, trusted_accuracy=0.97)
    assert weak["reliable"] is False and weak["accuracy"] == 0.688
    assert weak["warning"].startswith("UNRELIABLE: the digit judge is right on only 68.8 % of real recordings")
    assert "accuracy, inception score and Fréchet distance do not say" in weak["warning"]
    json.dumps(weak)
    strong = judge_reliability(0.97, holdout_takes=0.1, trusted_accuracy=0.97)
    assert strong == {"accuracy": 0.97, "trusted_accuracy": 0.97, "holdout_takes": 0.1, "reliable": True}


def test_unheard_keeps_only_the_held_out_takes():
    split = {
        "x": np.arange(40.0),
        "digit": np.repeat([1, 2], 20),
        "speaker": np.array(["a", "b"] * 20),
        "take": np.arange(40) // 2,
    }
    kept = unheard(split, holdout_takes=0.1)
    # Each (speaker, digit) group has 10 takes; the lowest one of each is held out.
    assert sorted(zip(kept["speaker"].tolist(), kept["digit"].tolist(), kept["take"].tolist())) == [
        ("a", 1, 0),
        ("a", 2, 10),
        ("b", 1, 0),
        ("b", 2, 10),
    ]
    assert kept["x"].tolist() == [0.0, 1.0, 20.0, 21.0]


# ----------------------------------------------------------------- novelty: new voices, not copies


def test_nearest_distance_is_the_rms_difference_to_the_closest_image():
    pool = np.stack([np.zeros((2, 2)), np.full((2, 2), 0.5), np.ones((2, 2))])
    queries = np.stack([np.full((2, 2), 0.4), np.full((2, 2), 1.1), np.array([[0.0, 0.0], [0.0, 0.4]])])
    np.testing.assert_allclose(nearest_distances(queries, pool), [0.1, 0.1, 0.2], rtol=1e-5)  # float32 products
    # Many queries, compared a block at a time, give the same answer as one by one.
    rng = np.random.default_rng(0)
    many, pool = rng.uniform(size=(150, 3, 3)), rng.uniform(size=(40, 3, 3))
    one_by_one = [np.sqrt(np.min(np.mean((pool - q) ** 2, axis=(1, 2)))) for q in many]
    np.testing.assert_allclose(nearest_distances(many, pool), one_by_one, rtol=1e-5)


def voices(rng, n: int, speakers: np.ndarray) -> np.ndarray:
    """Clips of some of ``speakers``' voices: a voice's pattern plus per-clip noise."""
    return np.clip(speakers[rng.integers(len(speakers), size=n)] + rng.normal(0, 0.05, (n, 8, 8)), 0, 1)


def test_a_generator_that_replays_its_training_clips_is_caught():
    rng = np.random.default_rng(1)
    train = voices(rng, 200, rng.uniform(size=(10, 8, 8)))
    unheard_clips = voices(rng, 50, rng.uniform(size=(5, 8, 8)))  # other speakers' voices
    replayed = train[rng.choice(200, 40, replace=False)]
    copies = novelty(replayed, unheard_clips, train)
    assert copies["generated_nearest_train"] == 0 and copies["ratio"] == 0 and copies["copies"] == 1.0
    # Replays with a little noise on top (a VAE decoding its training clips' own latents) are caught too.
    noisy = novelty(np.clip(replayed + rng.normal(0, 0.01, replayed.shape), 0, 1), unheard_clips, train)
    assert noisy["ratio"] < 0.2 and noisy["copies"] == 1.0


def test_new_voices_are_as_far_from_the_training_clips_as_unheard_speakers():
    rng = np.random.default_rng(2)
    train = voices(rng, 200, rng.uniform(size=(10, 8, 8)))
    unheard_clips = voices(rng, 100, rng.uniform(size=(50, 8, 8)))
    new = voices(rng, 100, rng.uniform(size=(50, 8, 8)))  # a generator inventing voices of its own
    result = novelty(new, unheard_clips, train)
    assert 0.8 < result["ratio"] < 1.25 and result["copies"] < 0.1  # replays score 1
    assert result["generated_nearest_train"] > 0.1
    assert novelty(new[:0], unheard_clips, train) == {}


# ----------------------------------------------------------------- reference clips


def test_reference_clips_are_the_given_clips_and_take_turns_over_digits(tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    with zipfile.ZipFile(raw_dir / "audio.zip", "w") as archive:
        for speaker in ("01", "02", "03"):
            for digit in range(10):
                for take in range(3):
                    archive.writestr(f"{speaker}/{digit}_{speaker}_{take}.wav", b"")
        archive.writestr("README.txt", b"not a clip")
    # The clips that may serve: speaker 03's takes 0 and 2 (say, the takes the judge never heard).
    clips = {"digit": np.repeat(np.arange(10), 2), "speaker": np.array(["03"] * 20), "take": np.tile([0, 2], 10)}

    order = reference_candidates(raw_dir, clips, rng=np.random.default_rng(0))
    assert len(order) == 20
    assert {member.split("_")[-1] for member, _ in order} == {"0.wav", "2.wav"}
    assert all(member.startswith("03/") for member, _ in order)
    assert [digit for _, digit in order[:10]] == list(range(10))  # one of each digit first
    assert [digit for _, digit in order[10:20]] == list(range(10))
    assert order == reference_candidates(raw_dir, clips, rng=np.random.default_rng(0))
    assert order != reference_candidates(raw_dir, clips, rng=np.random.default_rng(1))


def test_digits_take_turns_whatever_their_counts():
    digits = np.array([5, 5, 5, 1, 2, 2])
    order = digits_in_turn(digits, rng=np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(6))
    assert digits[order].tolist() == [1, 2, 5, 2, 5, 5]


def test_an_even_subset_covers_every_digit_in_ascending_order():
    digits = np.array([5, 5, 5, 1, 2, 2, 1])
    pick = digits_evenly(digits, 3, rng=np.random.default_rng(3))
    assert pick.tolist() == sorted(pick.tolist())
    assert sorted(digits[pick].tolist()) == [1, 2, 5]
    assert len(digits_evenly(digits, 100, rng=np.random.default_rng(3))) == len(digits)


def test_voices_from_several_takes_group_one_speakers_takes_of_different_digits():
    from speakdigits.evaluation import TAKE_VOICES

    # Speaker "a": 5 takes of each digit; "b": one take of each digit; "c": two clips only.
    speaker = np.array(["a"] * 50 + ["b"] * 10 + ["c"] * 2)
    digit = np.concatenate([np.repeat(np.arange(10), 5), np.arange(10), [3, 4]])
    clips = {"speaker": speaker, "digit": digit}
    groups = take_groups(clips, 3, rng=np.random.default_rng(0))
    assert len(groups) == TAKE_VOICES == 16  # capped: a's 16 and b's 3 would be 19
    assert all(len(group) == 3 and len(set(speaker[group])) == 1 for group in groups)
    assert all(len(set(digit[group])) == 3 for group in groups)  # the digits in turn within a speaker
    assert [speaker[g[0]] for g in groups[:6]] == ["a", "b"] * 3  # speakers take turns: the cap leaves none out
    used = np.concatenate(groups)
    assert len(set(used.tolist())) == len(used)  # no take in two voices
    assert "c" not in speaker[used]  # fewer takes than a voice needs
    assert groups[0].tolist() == take_groups(clips, 3, rng=np.random.default_rng(0))[0].tolist()
    assert take_groups(clips, 0, rng=np.random.default_rng(0)) == []
    assert len(take_groups(clips, 1, rng=np.random.default_rng(0))) == TAKE_VOICES


def test_summary_of_no_clips_is_just_the_count():
    assert summary(np.zeros((0, 10)), np.zeros(0)) == {"clips": 0}
