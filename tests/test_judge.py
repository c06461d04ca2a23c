"""The judge's metrics on constructed cases with known answers (pure NumPy, no
model), and the choice of reference clips for the vocoder ceiling."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from speakdigits.evaluation import _judged_summary, _verdicts, headline, reference_candidates
from speakdigits.judge import accuracy, class_histogram, frechet_distance, inception_score, mean_confidence, summary


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
    assert out["class_histogram"] == {str(d): 2 for d in range(10)}


def test_an_unjudgeable_clip_counts_as_wrong():
    # Three clips; the middle one could not be judged (silent), the other two are right.
    result = {"probs": np.array([np.eye(10)[3], np.eye(10)[5]]), "judged": [0, 2], "mels_db": [0, None, 0]}
    verdicts, confidence = _verdicts(result, 3)
    assert verdicts.tolist() == [3, -1, 5] and confidence.tolist() == [1.0, 0.0, 1.0]
    out = _judged_summary(result, [3, 4, 5], 3)
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["clips"] == 3


def test_headline_formats_every_metric():
    metrics = {
        "generated": {"conditional": True, "accuracy": 0.9, "inception_score": 7.25, "mean_confidence": 0.8,
                      "frechet_distance": 12.5, "class_histogram": {"0": 3, "1": 1}},
        "real": {"clips": 400, "accuracy": 0.985, "inception_score": 9.7},
        "vocoder_ceiling": {"clips": 20, "accuracy": 0.95, "real_accuracy_same_clips": 1.0},
        "vae": {"reconstruction_mse": 0.007, "judge_accuracy_mel": 0.99},
    }
    rows = dict(headline(metrics))
    assert rows["Generated: share that says the digit asked for"] == "90.0 %"
    assert rows["Generated: inception score (10 at most)"] == "7.25"
    assert rows["Generated: judge's verdicts, digit: count"] == "0: 3, 1: 1"
    assert rows["Real test clips (400): judge accuracy"] == "98.5 %"
    assert any(value.startswith("95.0 % (same clips as recorded: 100.0 %)") for value in rows.values())
    # A metric that could not be measured shows as a dash, not as an error.
    assert rows["VAE reconstructions re-synthesised (reference clips): judge accuracy"] == "–"
    metrics["generated"]["conditional"] = False
    assert "Generated: share that says the digit asked for" not in dict(headline(metrics))


# ----------------------------------------------------------------- reference clips


def test_reference_clips_come_from_test_speakers_and_take_turns_over_digits(tmp_path):
    raw_dir, normalized_dir = tmp_path / "raw", tmp_path / "normalized"
    raw_dir.mkdir()
    normalized_dir.mkdir()
    with zipfile.ZipFile(raw_dir / "audio.zip", "w") as archive:
        for speaker in ("01", "02", "03"):
            for digit in range(10):
                for take in range(3):
                    archive.writestr(f"{speaker}/{digit}_{speaker}_{take}.wav", b"")
        archive.writestr("README.txt", b"not a clip")
    (normalized_dir / "split.json").write_text(json.dumps({"train": ["01"], "val": ["02"], "test": ["03"]}))

    order = reference_candidates(raw_dir, normalized_dir, seed=0)
    assert len(order) == 30
    assert all(member.startswith("03/") for member, _ in order)
    assert [digit for _, digit in order[:10]] == list(range(10))  # one of each digit first
    assert [digit for _, digit in order[10:20]] == list(range(10))
    assert order == reference_candidates(raw_dir, normalized_dir, seed=0)
    assert order != reference_candidates(raw_dir, normalized_dir, seed=1)


def test_summary_of_no_clips_is_just_the_count():
    assert summary(np.zeros((0, 10)), np.zeros(0)) == {"clips": 0}
