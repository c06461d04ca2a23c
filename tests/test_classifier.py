"""The classify stage's library: labels and age brackets, which tasks the data
support, the CNN, training on tiny synthetic digits (eSpeak NG voices, as the
pipeline's synthetic source makes them) and judging their wav files; and the
params it adds."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from speakdigits import espeak, synthetic
from speakdigits.audio import clip_to_mel
from speakdigits.classifier import (
    AGE_BRACKETS,
    CLASSES,
    age_bracket,
    build_classifier,
    judge_splits,
    task_availability,
    task_labels,
    train_classifiers,
    train_task,
)
from speakdigits.errors import PipelineError
from speakdigits.formats.classifiers import CLASSIFIERS_JSON, load_classifier, read_classifiers_info, save_classifiers
from speakdigits.formats.normalized import scale, write_split
from speakdigits.judge import Judge
from speakdigits.normalize import fit_min_max
from speakdigits.params import ClassifyParams, MelParams
from speakdigits.wav import wav_bytes

from conftest import rejection, with_value, without

# Small and quick: 8 kHz, 32 x 32 mels.
MEL = MelParams(
    **{
        "sample_rate": 8000,
        "duration": 1.0,
        "n_mels": 32,
        "frames": 32,
        "n_fft": 512,
        "fmin": 0.0,
        "fmax": None,
        "trim_db": 40.0,
        "top_db": 80.0,
    }
)
SEED = 7


def settings(*, epochs: int, batch_size: int, patience: int, learning_rate: float = 0.001) -> ClassifyParams:
    """A ``classify`` params section for a quick test."""
    return ClassifyParams(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience, holdout_takes=0.1
    )


def split_of(x, digits, gender=None, age=None, speaker="s", takes=None) -> dict:
    n = len(digits)
    x = np.asarray(x, dtype=np.float32)
    return {
        "x": x,
        "pitch": np.full((n, 2, x.shape[-1]), 0.5, dtype=np.float32),  # the VAE's; the judges never read it
        "digit": np.asarray(digits, dtype=np.int64),
        "speaker": np.array([speaker] * n, dtype=str),
        "take": np.asarray(takes if takes is not None else np.arange(n) // 10, dtype=np.int64),
        "gender": np.array(gender if gender is not None else ["unknown"] * n),
        "age": np.asarray(age if age is not None else [-1] * n, dtype=np.int64),
    }


# ----------------------------------------------------------------- params


def test_the_repo_params_have_the_new_sections():
    from speakdigits.params import load_params

    from conftest import REPO

    params = load_params(REPO / "params.yaml")
    assert isinstance(params.classify, ClassifyParams)
    assert params.evaluate.reference_clips >= 1
    assert params.evaluate.trusted_judge_accuracy == 0.97


@pytest.mark.parametrize(
    ("dotted", "value", "allowed"),
    [
        ("classify.epochs", 0, "an integer in [1, 10000]"),
        ("classify.batch_size", 2.5, "an integer in [1, 65536]"),
        ("classify.learning_rate", "fast", "a number in [1e-07, 10]"),
        ("classify.patience", -1, "an integer in [1, 10000]"),
        ("evaluate.reference_clips", 0, "an integer in [1, 10000]"),
        ("evaluate.reference_clips", None, "an integer in [1, 10000]"),
        ("classify.holdout_takes", 0, "a number in [0.01, 0.3]"),
        ("classify.holdout_takes", 0.5, "a number in [0.01, 0.3]"),
        ("evaluate.trusted_judge_accuracy", 1.5, "a number in [0, 1]"),
    ],
)
def test_bad_classify_and_evaluate_values_are_named(tmp_path, dotted, value, allowed):
    message = rejection(tmp_path, with_value(dotted, value))
    assert f"{dotted} = {value!r} is not allowed" in message
    assert f"expected {allowed}" in message


@pytest.mark.parametrize("dotted", ["classify", "classify.patience", "evaluate.reference_clips"])
def test_missing_classify_and_evaluate_keys_are_named(tmp_path, dotted):
    assert f"missing key '{dotted}'" in rejection(tmp_path, without(dotted))


def test_unknown_evaluate_key_is_named(tmp_path):
    params = with_value("evaluate.reference_clip", 3)
    assert "unknown key 'evaluate.reference_clip'" in rejection(tmp_path, params)


# ----------------------------------------------------------------- labels and availability


@pytest.mark.parametrize(
    ("age", "bracket"),
    [
        (10, "10-19"),
        (19, "10-19"),
        (20, "20-29"),
        (59, "50-59"),
        (69, "60-69"),
        (70, "70-89"),
        (89, "70-89"),
    ],
)
def test_ages_fall_in_the_seven_original_brackets(age, bracket):
    assert len(AGE_BRACKETS) == 7
    assert CLASSES["age"][age_bracket(age)] == bracket


@pytest.mark.parametrize("age", [-1, 5, 9, 90, 104])
def test_unknown_and_out_of_bracket_ages_are_dropped(age):
    assert age_bracket(age) == -1


def test_task_labels_mark_unknowns():
    split = split_of(
        np.zeros((4, 2, 2)), [3, 1, 4, 1], gender=["female", "unknown", "male", "female"], age=[25, -1, 95, 71]
    )
    assert task_labels(split, "digit").tolist() == [3, 1, 4, 1]
    assert task_labels(split, "gender").tolist() == [0, -1, 1, 0]
    assert task_labels(split, "age").tolist() == [1, -1, -1, 6]


def test_availability_says_why_a_task_cannot_be_trained():
    x = np.zeros((4, 2, 2))
    both = split_of(x, [0, 1, 2, 3], gender=["female", "male", "female", "male"], age=[25, 35, -1, -1])
    no_metadata = split_of(x, [0, 1, 2, 3])
    one_gender = split_of(x, [0, 1, 2, 3], gender=["male"] * 4, age=[33] * 4)
    assert task_availability({"train": both, "test": both}, "gender") == (True, "")
    assert task_availability({"train": both, "test": both}, "age") == (True, "")

    ok, reason = task_availability({"train": no_metadata, "test": both}, "gender")
    assert not ok and reason == "no train clip has a known gender (not in the data set's metadata)"
    ok, reason = task_availability({"train": both, "test": one_gender}, "gender")
    assert not ok and "all test clips with a known gender are of one class (male)" in reason
    ok, reason = task_availability({"train": both, "test": one_gender}, "age")
    assert not ok and "(30-39)" in reason
    ok, reason = task_availability({"train": both, "test": split_of(np.zeros((0, 2, 2)), [])}, "digit")
    assert not ok and reason == "test split is empty"
    assert task_availability({"train": no_metadata, "test": no_metadata}, "digit") == (True, "")


@pytest.mark.parametrize("shape", [(16, 16), (21, 13)])
def test_the_cnn_takes_any_mel_shape(shape):
    model = build_classifier(shape, 7, name="age")
    assert tuple(model.output.shape[1:]) == (7,)
    assert tuple(model.get_layer("embedding").output.shape[1:]) == (64,)
    probs = model.predict(np.zeros((2, *shape, 1), np.float32), verbose=0)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


# ----------------------------------------------------------------- trained on tiny synthetic digits


def synthetic_clips(speaker, takes: int) -> list[tuple[bytes, int]]:
    rate = espeak.sample_rate()
    return [
        (wav_bytes(synthetic.speak_takes(speaker, [(digit, take)], seed=SEED, noise_db=-60.0)[0], rate), digit)
        for digit in range(10)
        for take in range(takes)
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digit classifier trained on 4 synthetic speakers, saved, and a 5th speaker's wav files."""
    speakers = synthetic.make_speakers(5, seed=SEED)
    train_clips = [clip for speaker in speakers[:4] for clip in synthetic_clips(speaker, 2)]
    mels = np.stack([clip_to_mel(wav, MEL) for wav, _ in train_clips])
    mel_min, mel_max = fit_min_max(mels)
    train = split_of(scale(mels, mel_min, mel_max), [d for _, d in train_clips])
    empty = split_of(np.zeros((0, 32, 32)), [])
    model, report = train_task(
        {"train": train, "val": empty, "test": train},
        "digit",
        classify=settings(epochs=40, batch_size=16, patience=5),
        seed=SEED,
    )
    out = tmp_path_factory.mktemp("classifiers")
    save_classifiers(
        out,
        {"digit": model},
        (32, 32),
        classes=CLASSES,
        test_accuracy={"digit": report["test_accuracy"]},
        holdout_takes=0.1,
    )
    return {
        "model": model,
        "report": report,
        "dir": out,
        "mel_min": mel_min,
        "mel_max": mel_max,
        "unseen": synthetic_clips(speakers[4], 2),
    }


def test_a_judge_recognises_an_unseen_synthetic_speaker_from_wav_files(trained):
    judge = Judge.load(trained["dir"], mel=MEL, mel_min=trained["mel_min"], mel_max=trained["mel_max"])
    result = judge.wavs([wav for wav, _ in trained["unseen"]])
    assert result.judged == list(range(20)) and result.problems == [None] * 20
    said = np.array([digit for _, digit in trained["unseen"]])
    verdicts = result.probs.argmax(axis=1)
    # Chance is 10 %; the held-out speaker's clips mostly score as the digit they say.
    assert np.mean(verdicts == said) >= 0.5, verdicts
    assert result.embeddings.shape == (20, 64)
    assert np.allclose(result.probs.sum(axis=1), 1.0, atol=1e-5)


def test_the_judge_hears_what_the_extract_stage_makes(trained):
    judge = Judge.load(trained["dir"], mel=MEL, mel_min=trained["mel_min"], mel_max=trained["mel_max"])
    wav = trained["unseen"][3][0]
    mel_db = judge.mel_db(wav)
    assert np.array_equal(mel_db, clip_to_mel(wav, MEL))
    # Its probabilities are the saved classifier's, reloaded in safe mode, on the scaled mel.
    x = scale(mel_db[None], trained["mel_min"], trained["mel_max"])
    expected = trained["model"].predict(x[..., None], verbose=0)
    assert np.allclose(judge.images(x)[0], expected, atol=1e-5)


def test_unusable_wav_files_are_reported_not_judged(trained):
    judge = Judge.load(trained["dir"], mel=MEL, mel_min=trained["mel_min"], mel_max=trained["mel_max"])
    silent = wav_bytes(np.zeros(8000, np.float32), 8000)
    result = judge.wavs([silent, trained["unseen"][0][0], b"not a wav"])
    assert result.judged == [1]
    assert result.problems[0].startswith("silent") and result.problems[2].startswith("unreadable")
    assert result.mels_db[0] is None and result.probs.shape == (1, 10)


def test_training_reports_accuracy_and_confusion(trained):
    report = trained["report"]
    assert report["train_clips"] == 80 and report["val_clips"] == 0 and report["test_clips"] == 80
    assert report["majority_baseline"] == pytest.approx(0.1)
    assert 1 <= report["epochs_run"] <= 40
    assert len(report["confusion"]) == 80
    assert {r["actual"] for r in report["confusion"]} == set(CLASSES["digit"])
    hits = np.mean([r["actual"] == r["predicted"] for r in report["confusion"]])
    assert hits == pytest.approx(report["test_accuracy"])


def test_training_is_deterministic():
    rng = np.random.default_rng(0)
    data = split_of(rng.uniform(size=(30, 16, 16)), np.arange(30) % 10)
    splits = {"train": data, "val": data, "test": data}
    quick = settings(epochs=2, batch_size=8, learning_rate=0.01, patience=2)
    first, a = train_task(splits, "digit", classify=quick, seed=3)
    second, b = train_task(splits, "digit", classify=quick, seed=3)
    assert a == b
    for w1, w2 in zip(first.get_weights(), second.get_weights()):
        assert np.array_equal(w1, w2)


# ----------------------------------------------------------------- the whole stage's library call


def write_normalized(folder: Path, splits: dict) -> None:
    folder.mkdir(parents=True)
    for name, split in splits.items():
        write_split(folder, name, split)


def test_classify_trains_what_the_metadata_allows_and_explains_the_rest(tmp_path):
    rng = np.random.default_rng(1)
    genders = ["female", "male"] * 10

    def make(n_gender_known: int) -> dict:
        g = genders[:n_gender_known] + ["unknown"] * (20 - n_gender_known)
        return split_of(rng.uniform(size=(20, 16, 16)), np.arange(20) % 10, gender=g)

    write_normalized(tmp_path / "normalized", {"train": make(20), "val": make(0), "test": make(6)})
    metrics, confusion = train_classifiers(
        tmp_path / "normalized", tmp_path / "classifiers", classify=settings(epochs=1, batch_size=8, patience=1), seed=0
    )

    assert metrics["digit"]["available"] and metrics["gender"]["available"]
    assert metrics["gender"]["test_clips"] == 6 and metrics["gender"]["val_clips"] == 0
    assert metrics["gender"]["held_out"].startswith("speakers")
    # The digit judge hears all 60 clips' speakers (here one, "s", with 6 clips of each digit): one clip of
    # each digit tests it, one stops it early, four train it.
    assert metrics["digit"]["held_out"].startswith("takes")
    assert (metrics["digit"]["train_clips"], metrics["digit"]["val_clips"], metrics["digit"]["test_clips"]) == (
        40,
        10,
        10,
    )
    assert metrics["age"] == {
        "available": False,
        "held_out": "speakers: the test speakers of the normalize stage",
        "reason": "no train clip has a known age bracket (not in the data set's metadata)",
    }
    assert sorted(confusion) == ["digit", "gender"] and len(confusion["gender"]) == 6
    json.dumps(metrics)  # plain JSON

    folder = tmp_path / "classifiers"
    assert sorted(p.name for p in folder.iterdir()) == [CLASSIFIERS_JSON, "digit.keras", "gender.keras"]
    info = json.loads((folder / CLASSIFIERS_JSON).read_text())
    assert info == read_classifiers_info(folder)
    assert info["shape"] == [16, 16] and info["tasks"]["gender"]["classes"] == ["female", "male"]
    # What the evaluate stage needs to say what the judge's verdicts are worth.
    assert info["holdout_takes"] == 0.1
    assert info["tasks"]["digit"]["test_accuracy"] == metrics["digit"]["test_accuracy"]
    model, classes = load_classifier(folder, "gender")
    assert isinstance(model, keras.Model) and classes == ["female", "male"]
    with pytest.raises(PipelineError, match=r"no age classifier was trained \(metrics/classify.json says why\)"):
        load_classifier(folder, "age")
    with pytest.raises(PipelineError, match="run the classify stage first"):
        load_classifier(tmp_path / "nowhere", "digit")


def test_the_judge_hears_every_speaker_and_is_tested_on_takes_it_never_heard():
    rng = np.random.default_rng(2)

    def speaker(name: str, takes: int) -> dict:
        digits = np.repeat(np.arange(10), takes)
        return split_of(
            rng.uniform(size=(len(digits), 4, 4)), digits, speaker=name, takes=np.tile(np.arange(takes)[::-1], 10)
        )

    splits = {"train": speaker("ann", 20), "val": speaker("bob", 20), "test": speaker("cy", 20)}
    by_take = judge_splits(splits, holdout_takes=0.1)
    for name, takes in (("test", {0, 1}), ("val", {2, 3}), ("train", set(range(4, 20)))):
        split = by_take[name]
        assert sorted(set(split["speaker"].tolist())) == ["ann", "bob", "cy"]
        assert set(split["take"].tolist()) == takes
        assert np.bincount(split["digit"], minlength=10).tolist() == [3 * len(takes)] * 10
        assert set(split) == set(splits["train"])  # every array travels with its clips
    # Nothing is lost or doubled: 600 clips in all, each x row still beside its own labels.
    assert sum(len(by_take[n]["x"]) for n in by_take) == 600
    original = {
        (s, d, t): x.tobytes()
        for part in splits.values()
        for s, d, t, x in zip(part["speaker"], part["digit"], part["take"], part["x"])
    }
    for part in by_take.values():
        for s, d, t, x in zip(part["speaker"], part["digit"], part["take"], part["x"]):
            assert original[(s, d, t)] == x.tobytes()


def test_the_mfcc_gender_judge_is_held_out_by_the_normalize_stages_test_speakers(tmp_path):
    """mfcc_judge.gender_judge learns from the normalize stage's training speakers only and is tested on its
    test speakers, whom the evaluate stage's conversions come from; speakers of unknown gender are left out.
    One known gender among the training speakers, or among the test speakers (as the classify stage's rule),
    gives no judge, and says why."""
    from speakdigits.formats.mfcc_judge import GENDER, has_judge, read_judge_info
    from speakdigits.mfcc import FRAMES, N_MFCC
    from speakdigits.mfcc_judge import gender_judge
    from speakdigits.params import SplitParams
    from speakdigits.speakers import split_speakers

    split = SplitParams(val_fraction=0.2, test_fraction=0.2)
    names = [f"{i:02d}" for i in range(10)]
    roles = split_speakers(names, split=split, seed=4)
    train = roles["train"]
    # One test speaker of each gender, the training speakers taking turns, one of them of no known gender.
    genders = {roles["test"][0]: "female", roles["test"][1]: "male"}
    genders |= {name: ("female", "male")[k % 2] for k, name in enumerate(roles["val"] + train[:-1])}
    metadata = {name: {"gender": gender} for name, gender in genders.items()}
    speakers = np.repeat(names, 4)
    # Each gender's clips differ in their first coefficient's level, so the judge can learn it.
    level = np.array([{"female": 1.0, "male": -1.0}.get(genders.get(name), 0.0) for name in speakers])
    x = np.random.default_rng(0).normal(size=(len(speakers), FRAMES, N_MFCC)).astype(np.float32)
    x[:, :, 0] += 3 * level[:, None]
    classify = settings(epochs=3, batch_size=8, patience=3)
    report = gender_judge(tmp_path, x, speakers, metadata, classify=classify, split=split, seed=4)
    assert report["available"] and report["held_out"] == "speakers: the test speakers of the normalize stage"
    assert report["test_speakers"] == roles["test"] == read_judge_info(tmp_path, GENDER)["test_speakers"]
    assert (report["train_clips"], report["val_clips"], report["test_clips"]) == (4 * (len(train) - 1), 8, 8)
    assert read_judge_info(tmp_path, GENDER)["classes"] == ["female", "male"]

    for folder, changed, reason in (
        ("one", {name: {"gender": "male"} for name in names}, "the training speakers are of one known gender"),
        (
            "test",
            metadata | {roles["test"][0]: {"gender": "male"}},
            "the test speakers with a known gender are of one (male)",
        ),
    ):
        (tmp_path / folder).mkdir()
        report = gender_judge(tmp_path / folder, x, speakers, changed, classify=classify, split=split, seed=4)
        assert report == {"available": False, "reason": reason}
        assert not has_judge(tmp_path / folder, GENDER)
