"""End to end: the classify and evaluate stages under real DVC, in one committed
copy of the repository with tiny params: what they write, the listening page in
a browser, and which changes rerun them (evaluate follows generation; classify
follows only the normalised data and its own params).

The tests share the copy (module scope); each leaves it reproduced and up to
date, so they do not depend on each other's order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from PIL import Image

from speakdigits.formats.normalized import load_split

from conftest import (
    DVC,
    UP_TO_DATE,
    browser_check,
    params_of,
    ran_stages,
    readme_comparison,
    reproduced_copy,
    run,
    tags,
)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The copy after a first ``dvc repro``, and that command's result."""
    return reproduced_copy(tmp_path_factory, "judge_pipeline", {"evaluate": {"voice_clips": 4}})


def exp_run(repo: Path, *settings: str):
    args = [arg for setting in settings for arg in ("-S", setting)]
    return run(DVC + ["exp", "run", *args], repo)


def test_repro_trains_the_classifiers_and_judges_the_generated_clips(pipeline):
    repo, first = pipeline
    assert ran_stages(first.stdout)[-1] == "evaluate"
    assert set(ran_stages(first.stdout)) == {
        "download",
        "extract",
        "normalize",
        "train",
        "generate",
        "classify",
        "mfcc_judge",
        "evaluate",
    }

    classify = json.loads((repo / "metrics" / "classify.json").read_text())
    assert classify["digit"]["available"] is True and 0 <= classify["digit"]["test_accuracy"] <= 1
    # Tiny data: one test speaker, so gender cannot be tested; the metrics say why.
    assert classify["gender"]["available"] is False and "one class" in classify["gender"]["reason"]
    assert classify["age"]["available"] is False and classify["age"]["reason"]
    assert (repo / "data" / "classifiers" / "digit.keras").is_file()
    confusion = json.loads((repo / "metrics" / "classify" / "confusion_digit.json").read_text())
    assert len(confusion) == classify["digit"]["test_clips"] and set(confusion[0]) == {"actual", "predicted"}

    metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    generated = metrics["generated"]
    assert generated["clips"] == 10 and generated["conditional"] is True
    assert 0 <= generated["accuracy"] <= 1 and 1 - 1e-9 <= generated["inception_score"] <= 10 + 1e-9
    assert sum(generated["class_histogram"].values()) == 10 - generated["unjudgeable"]
    assert generated["frechet_distance"] >= 0
    # The judge's own accuracy comes first: on the takes it never heard (take 0 of each speaker and digit).
    judge = metrics["judge"]
    assert judge["accuracy"] == classify["digit"]["test_accuracy"] and judge["holdout_takes"] == 0.1
    assert classify["digit"]["test_clips"] == 40 and classify["digit"]["test_speakers"] == 4
    # Tiny data and 3 epochs: the judge is far from trustworthy, and the metrics and the page say so.
    assert judge["reliable"] is False and judge["warning"].startswith("UNRELIABLE")
    page = (repo / "data" / "listen" / "index.html").read_text(encoding="utf-8")
    assert 'class="warning" role="alert">UNRELIABLE: the digit judge is right on only' in page
    # Real clips are the test speaker's takes that the judge never heard: 10 digits x take 0.
    assert metrics["real"]["clips"] == 10 and 0 <= metrics["real"]["accuracy"] <= 1
    assert metrics["real"]["frechet_distance"] >= 0  # 10 validation clips (as many as generated) to test
    novelty = metrics["novelty"]
    # Two epochs: the decoder draws nearly one image for everything, so the distances say little here
    # (tests/test_judge.py checks their meaning); they are there, and plain numbers.
    assert (
        {"generated_nearest_train", "unheard_nearest_train", "copies"}
        <= set(novelty)
        <= {"generated_nearest_train", "unheard_nearest_train", "ratio", "copies"}
    )
    assert all(value >= 0 for value in novelty.values())
    assert metrics["vocoder_ceiling"]["clips"] == params_of(repo)["evaluate"]["reference_clips"]
    assert {"accuracy", "accuracy_mfcc", "real_accuracy_same_clips"} <= set(metrics["vocoder_ceiling"])
    assert {"reconstruction_mse", "judge_accuracy_mel", "judge_accuracy_resynthesised"} <= set(metrics["vae"])
    # The second judge, trained on the raw recordings, and the lower of the two as the headline.
    second = json.loads((repo / "metrics" / "mfcc_judge.json").read_text())
    assert metrics["judges"]["mfcc"]["accuracy"] == second["test_accuracy"] and second["test_clips"] == 40
    assert generated["accuracy"] == min(generated["accuracy_mel"], generated["accuracy_mfcc"])
    for name in ("mel", "mfcc"):
        verdict = metrics["judges"][name]
        assert verdict["flatters"] == (verdict["generated"] > verdict["real"])
        assert ("warning" in verdict) == verdict["flatters"]
    # How every set sounds, measured on the audio; PESQ for the clips rebuilt from a real one.
    for key in ("generated", "real", "vocoder_ceiling", "vae"):
        sound = metrics[key]["sound"]
        assert sound["clips"] == (10 if key == "generated" else params_of(repo)["evaluate"]["reference_clips"])
        assert 0 <= sound["voiced"] <= 1 and all(1 <= sound[k] <= 5 for k in ("sig", "bak", "ovrl", "p808"))
        assert ("pesq" in sound) == (key in ("vocoder_ceiling", "vae")) or sound.get("pesq") is None
    # Voices: every reference clip's voice said as every other digit, heard by the digit judges and by the
    # speaker judge (mfcc_judge), which knows all 4 speakers (tested, like the digit judges, on takes it never heard).
    voices = metrics["voices"]
    references = params_of(repo)["evaluate"]["voice_clips"]
    assert voices["sources"] == references == 4 and voices["converted_clips"] == 9 * references
    assert voices["converted"] == min(voices["converted_mel"], voices["converted_mfcc"])
    # The digit judges flatter the conversions when they hear them better than the test speakers' recordings.
    for name, key in (("mel", "accuracy"), ("mfcc", "accuracy_mfcc")):
        verdict = voices["judges"][name]
        assert verdict["flatters"] == (voices[f"converted_{name}"] > metrics["real"][key])
        assert ("warning" in verdict) == verdict["flatters"]
    speaker = json.loads((repo / "metrics" / "mfcc_judge.json").read_text())["speaker"]
    assert speaker["held_out"].startswith("takes") and speaker["test_clips"] == 40  # 4 speakers x 10 digits x take 0
    assert voices["speaker_judge"] == {"accuracy": speaker["test_accuracy"], "speakers": 4, "chance": 0.25}
    assert sorted(p.name for p in (repo / "data" / "mfcc_judge").iterdir()) == [
        "judge.json",
        "judge.keras",
        "speaker.json",
        "speaker.keras",
    ]
    kept = ("voice_kept", "voice_kept_real", "voice_kept_reconstructed", "voice_kept_own_digit")
    assert all(0 <= voices[k] <= 1 for k in kept)
    # ... and within each source speaker's conversions: voice_kept is a mean of those.
    per_speaker = voices["voice_kept_per_speaker"]
    assert sorted(per_speaker) == voices["source_speakers"]
    assert min(per_speaker.values()) <= voices["voice_kept"] <= max(per_speaker.values())
    # Tiny data: one test speaker, so no gender judge of either stage to ask; the metrics say why.
    assert "gender_kept" not in voices and "gender_mel" not in voices
    gender = json.loads((repo / "metrics" / "mfcc_judge.json").read_text())["gender"]
    assert not gender["available"] and gender["reason"].startswith("the test speakers with a known gender are of one")
    # The two training speakers' voices (as generate --speaker says them), each saying every digit.
    assert voices["known_voices"]["speakers"] == 2 and 0 <= voices["known_voices"]["kept"] <= 1
    # ... beside the speaker judge on the same digits said with no voice at all: its bias towards them.
    assert 0 <= voices["known_voices"]["kept_without_voice"] <= 1
    assert 0 <= voices["speaker_bias"]["voice_kept_without_voice"] <= 1
    # The test speaker's voice from 3 of their unheard takes at a time (10 takes: 3 voices), saying every digit.
    takes = voices["take_voices"]
    assert (takes["voices"], takes["takes"], takes["speakers"]) == (3, 3, 1)
    assert all(0 <= takes[k] <= 1 for k in ("said", "kept", "kept_without_voice"))
    # The map holds the test speakers' clips only (one speaker here: 10 digits x 2 takes).
    test_clips = len(load_split(repo / "data" / "normalized", "test")["digit"])
    assert voices["latent_map"]["clips"] == test_clips == 20 and voices["latent_map"]["speakers"] == 1
    assert "speaker_separation" not in voices["latent_map"] and 0 <= voices["latent_map"]["digit_separation"] <= 1
    assert Image.open(repo / "data" / "listen" / "latent_map.png").size[0] > 500
    assert "<h2>Voices: one voice saying every digit" in page and 'src="latent_map.png"' in page
    # Three voices saying every digit (the source, then 0-9), a voice from 3 takes saying every digit, then six
    # steps from one voice to another.
    assert page.count('class="label wide"') == 5 and "the voice of 3 takes of " in page
    assert len(list((repo / "data" / "listen" / "voices").glob("takes_0_says_*.wav"))) == 10
    assert len(list((repo / "data" / "listen" / "voices").glob("*_as_*.wav"))) == 3 * 9

    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    assert summary["converted"] == pytest.approx(voices["converted"], rel=1e-3)
    assert summary["voice_kept"] == pytest.approx(voices["voice_kept"], rel=1e-3)
    assert summary["voice_kept_takes"] == pytest.approx(takes["kept"], rel=1e-3)
    table = run(DVC + readme_comparison(1) + ["--no-pager"], repo, env={"COLUMNS": "120"}).stdout
    header = next(line for line in table.splitlines() if "Experiment" in line)
    # The README's voices table.
    assert header.split() == ["Experiment", "converted", "voice_kept", "voice_kept_takes"], table
    assert summary["accuracy"] == pytest.approx(generated["accuracy"], rel=1e-3)
    assert summary["voiced"] == pytest.approx(metrics["generated"]["sound"]["voiced"], rel=1e-3)
    assert summary["naturalness"] == pytest.approx(metrics["generated"]["sound"]["ovrl"], rel=1e-3)

    # Not declared as metrics (dvc exp show would not fit a terminal), but readable by name.
    shown = json.loads(
        run(DVC + ["metrics", "show", "--json", "metrics/classify.json", "metrics/evaluate.json"], repo).stdout
    )[""]["data"]
    for path in ("metrics/classify.json", "metrics/evaluate.json"):
        assert "error" not in shown[path], shown[path]
    plots = json.loads(run(DVC + ["plots", "show", "--json"], repo).stdout)
    assert not plots.get("errors")
    matrix = plots["data"]["metrics/classify/confusion_digit.json"][0]["content"]
    assert len(matrix["data"]["values"]) == len(confusion)
    assert "data/listen/latent_map.png" in plots["data"]
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout


def test_the_listening_page_plays_every_clip_offline(pipeline, tmp_path):
    repo, _ = pipeline
    listen = repo / "data" / "listen"
    page = (listen / "index.html").read_text(encoding="utf-8")
    found = tags(page)
    audio = [attrs["src"] for tag, attrs in found if tag == "audio"]
    images = [attrs["src"] for tag, attrs in found if tag == "img"]
    references = params_of(repo)["evaluate"]["reference_clips"]
    # Every generated clip; real, vocoder ceiling and VAE per reference; three voices, each a source clip and
    # its voice saying every digit; a voice from three takes saying every digit; six steps from one voice to another.
    assert len(audio) == 10 + 3 * references + 3 * (1 + 10) + 10 + 6
    for src in audio + images:
        assert not src.startswith(("/", "http:", "https:", "file:")) and (listen / src).is_file(), src
    # The generated clips are on the page as they were generated.
    for digit in range(10):
        assert (listen / "generated" / f"{digit}_00.wav").read_bytes() == (
            repo / "data" / "generated" / f"{digit}_00.wav"
        ).read_bytes()
    assert sf.info(listen / audio[-1]).subtype == "PCM_16"
    verdicts = json.loads((listen / "verdicts.json").read_text())
    assert len(verdicts) == len(audio)
    assert "://" not in page
    assert browser_check(listen / "index.html", tmp_path / "profile") == f"ok: {len(audio)} audio, {len(images)} img"


def test_a_model_experiment_reruns_evaluate_but_not_classify(pipeline):
    repo, _ = pipeline
    latent = 8 if params_of(repo)["latent_dim"] != 8 else 6
    result = exp_run(repo, f"latent_dim={latent}")
    assert ran_stages(result.stdout) == ["train", "generate", "evaluate"]
    for stage in ("classify", "mfcc_judge"):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout
    # Every experiment is compared on the judge's metrics.
    rows = json.loads(run(DVC + ["exp", "show", "--json"], repo).stdout)
    exps = [exp for commit in rows for exp in commit.get("experiments") or []]
    assert exps and all("judge" in exp["revs"][0]["data"]["metrics"]["metrics/summary.json"]["data"] for exp in exps)


def test_a_generation_change_reruns_generate_and_evaluate_only(pipeline):
    repo, _ = pipeline
    iters = 3 if params_of(repo)["generate"]["harmonic_iters"] != 3 else 5
    before = (repo / "metrics" / "evaluate.json").read_text()
    result = exp_run(repo, f"generate.harmonic_iters={iters}")
    assert ran_stages(result.stdout) == ["generate", "evaluate"]
    for stage in ("train", "classify", "mfcc_judge"):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    assert (repo / "metrics" / "evaluate.json").read_text() != before
    again = run(DVC + ["repro"], repo)
    assert ran_stages(again.stdout) == []
    assert "Stage 'evaluate' didn't change, skipping" in again.stdout


def test_a_classifier_change_reruns_classify_and_evaluate_only(pipeline):
    repo, _ = pipeline
    epochs = 2 if params_of(repo)["classify"]["epochs"] != 2 else 4
    result = exp_run(repo, f"classify.epochs={epochs}")
    assert sorted(ran_stages(result.stdout)) == ["classify", "evaluate", "mfcc_judge"]
    assert "Stage 'train' didn't change, skipping" in result.stdout
    assert "Stage 'generate' didn't change, skipping" in result.stdout


def test_a_trusted_judge_bar_reruns_evaluate_only_and_lifts_the_warning(pipeline):
    repo, _ = pipeline
    # What the experiment rewrites in git's part of the workspace (DVC's part comes back from the cache).
    before = {
        path: path.read_bytes()
        for path in [
            repo / "params.yaml",
            repo / "dvc.lock",
            repo / "metrics" / "evaluate.json",
            repo / "metrics" / "summary.json",
        ]
    }
    result = exp_run(repo, "evaluate.trusted_judge_accuracy=0")
    assert ran_stages(result.stdout) == ["evaluate"]
    judge = json.loads((repo / "metrics" / "evaluate.json").read_text())["judge"]
    assert judge["reliable"] is True and "warning" not in judge
    assert 'role="alert">UNRELIABLE' not in (repo / "data" / "listen" / "index.html").read_text(encoding="utf-8")
    # Back as it was, from the cache rather than by a second evaluate (a minute of the suite).
    for path, data in before.items():
        path.write_bytes(data)
    run(DVC + ["checkout", "--force"], repo)
    assert UP_TO_DATE in run(DVC + ["status"], repo).stdout
    assert 'role="alert">UNRELIABLE' in (repo / "data" / "listen" / "index.html").read_text(encoding="utf-8")


def test_an_unconditional_model_is_judged_without_requested_digits(pipeline):
    repo, _ = pipeline
    result = exp_run(repo, "vae.conditional=false", "generate.n_samples=6")
    assert ran_stages(result.stdout) == ["train", "generate", "evaluate"]
    generated = json.loads((repo / "metrics" / "evaluate.json").read_text())["generated"]
    assert generated["conditional"] is False and "accuracy" not in generated
    assert generated["clips"] == 6 and "inception_score" in generated
    page = (repo / "data" / "listen" / "index.html").read_text(encoding="utf-8")
    assert "share that says the digit asked for" not in page
    assert "heard " in page  # rows grouped by what the judge heard
    assert sum(tag == "audio" for tag, _ in tags(page)) == 6 + 3 * params_of(repo)["evaluate"]["reference_clips"]
