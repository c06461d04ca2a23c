"""The listening page: self-contained HTML that shows what the evaluate stage hands it (the figures,
every clip in its row, a warning about a judge), and, in a real headless browser
(Debian's chromium), every player has a decodable source and every image loads.

The page checks itself once loaded and writes the result into
``<body data-check="...">``; chromium's ``--dump-dom`` hands the DOM back after
the page's scripts ran. Where chromium is not installed the browser tests skip
and say so (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from speakdigits.listening import Clip, Heard, save_mel_png, write_listening_page, write_page
from speakdigits.wav import wav_bytes

from conftest import browser_check, tags


def tone(seconds: float, rate: int, freq: float) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return wav_bytes((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def make_page(folder: Path, *, broken: bool = False, row: int = 3) -> Path:
    """A page with six clips (two sample rates, one unjudged) and their mel images; optionally a broken pair."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clips").mkdir()
    generated = []
    for i, rate in enumerate([22050, 22050, 8000, 16000, 22050]):
        (folder / "clips" / f"{i}.wav").write_bytes(tone(1.0, rate, 220 * (i + 1)))
        save_mel_png(folder / "clips" / f"{i}.png", np.random.default_rng(i).uniform(-80, 0, (16, 24)), low=-80, high=0)
        generated.append(
            Clip(
                f"clips/{i}.wav",
                f"clips/{i}.png",
                f"{i}.wav",
                verdict=str(i % 3),
                confidence=0.5 + i / 10,
                expected=str(i % 2),
            )
        )
    generated.append(Clip("clips/0.wav", None, "silent.wav", note="not judged: silent"))
    if broken:
        (folder / "clips" / "bad.wav").write_bytes(b"RIFF....WAVEnot really")
        generated.append(Clip("clips/bad.wav", "clips/missing.png", "bad.wav"))
    write_page(
        folder,
        title="Test page <b>",
        headline=[("accuracy", "90.0 %")],
        intro=["Intro & text."],
        generated=[("0", (generated[:3] * 4)[:row]), ("1", generated[3:])],
        references=[("7", generated[:2])],
        reference_header=["digit", "real", "ceiling"],
        notes=["A note."],
    )
    return folder / "index.html"


# ----------------------------------------------------------------- the HTML itself


def test_page_is_self_contained_with_relative_links(tmp_path):
    page = make_page(tmp_path / "listen").read_text(encoding="utf-8")
    found = tags(page)
    sources = [attrs["src"] for tag, attrs in found if "src" in attrs]
    assert sources and all(not re.match(r"^[a-z]+:|^/", src) for src in sources), sources
    assert all((tmp_path / "listen" / src).is_file() for src in sources)
    # Nothing fetched from elsewhere: no script or style sheet files, no fonts, no URLs at all.
    assert not [attrs for tag, attrs in found if tag == "script" and "src" in attrs]
    assert not [tag for tag, _ in found if tag == "link"]
    assert "://" not in page and "@import" not in page and "url(" not in page
    assert sum(tag == "audio" for tag, _ in found) == 8
    assert all(attrs.get("preload") == "auto" and "controls" in attrs for tag, attrs in found if tag == "audio")


def test_page_shows_verdicts_marks_and_escapes_text(tmp_path):
    page = make_page(tmp_path / "listen").read_text(encoding="utf-8")
    assert "<title>Test page &lt;b&gt;</title>" in page and "Intro &amp; text." in page
    assert 'judge: 0 (50%) <span class="right">✓</span>' in page  # clip 0: verdict 0, expected 0
    assert 'judge: 2 (70%) <span class="wrong">✗</span>' in page  # clip 2: verdict 2, expected 0
    assert "not judged: silent" in page
    assert "<th>accuracy</th><td>90.0 %</td>" in page
    assert '<body data-check="pending">' in page


# ----------------------------------------------------------------- the evaluate stage's page

CLASSES = [str(d) for d in range(10)]


def heard(name: str, freq: float, expected: int, verdict: int | None, problem: str | None = None) -> Heard:
    """A clip as the evaluate stage hands it over (a tone of its own); a clip it could not judge has no mel image."""
    return Heard(
        name=name,
        title=f"clip {name}",
        wav=tone(0.25, 8000, freq),
        mel_db=None if verdict is None else np.random.default_rng(len(name)).uniform(-80, 0, (16, 24)),
        expected=expected,
        verdict=verdict,
        confidence=None if verdict is None else 0.75,
        problem=problem,
        second_verdict=verdict,
        second_confidence=None if verdict is None else 0.5,
    )


def page_metrics(*, mfcc_flatters: bool) -> dict:
    """The evaluate stage's metrics, with the MFCC judge hearing the generated clips better than real speech
    (its sanity rule, speakdigits.evaluation.flattery, then adds a warning) or worse."""
    mfcc = {"accuracy": 0.99, "real": 0.95, "generated": 0.97 if mfcc_flatters else 0.9, "flatters": mfcc_flatters}
    if mfcc_flatters:
        mfcc["warning"] = "FLATTERS: the MFCC judge hears the generated clips better (97.0 %) than real recordings"
    return {
        "judge": {"accuracy": 0.983, "trusted_accuracy": 0.97, "holdout_takes": 0.1, "reliable": True},
        "judges": {"mel": {"accuracy": 0.983, "real": 0.985, "generated": 0.875, "flatters": False}, "mfcc": mfcc},
        "generated": {
            "conditional": True,
            "accuracy": 0.875,
            "accuracy_mel": 0.875,
            "accuracy_mfcc": mfcc["generated"],
            "inception_score": 7.25,
            "sound": {"clips": 3, "voiced": 0.625},
        },
        "real": {"clips": 400, "accuracy": 0.985, "accuracy_mfcc": 0.95},
        "vocoder_ceiling": {"clips": 1},
        "vae": {"reconstruction_mse": 0.0071},
        "novelty": {},
    }


def write_judged_page(folder: Path, *, mfcc_flatters: bool, conditional: bool = True) -> tuple[str, dict[str, bytes]]:
    """write_listening_page's page (three generated clips of digits 3 and 5, one unjudged; reference rows of
    digits 5 and 2) and each clip's bytes by its path on the page."""
    generated = [heard("3_00", 200, 3, 3), heard("3_01", 250, 3, 8), heard("5_00", 300, 5, None, "silent")]
    references = [
        [heard("real_5", 350, 5, 5), heard("ceiling_5", 400, 5, 5), heard("vae_5", 450, 5, 6)],
        [heard("real_2", 500, 2, 2), heard("ceiling_2", 550, 2, None, "silent"), heard("vae_2", 600, 2, 2)],
    ]
    folder.mkdir()
    metrics = page_metrics(mfcc_flatters=mfcc_flatters)
    metrics["generated"]["conditional"] = conditional
    write_listening_page(
        folder,
        metrics=metrics,
        classes=CLASSES,
        mel_range=(-80.0, 0.0),
        generated=generated,
        references=references,
    )
    given = {f"generated/{h.name}.wav": h.wav for h in generated}
    given |= {f"reference/{h.name}.wav": h.wav for row in references for h in row}
    return (folder / "index.html").read_text(encoding="utf-8"), given


def test_the_page_shows_the_headline_figures_it_was_given(tmp_path):
    page, _ = write_judged_page(tmp_path / "listen", mfcc_flatters=False)
    cells = re.findall(r"<tr><th>[^<]*</th><td>([^<]*)</td></tr>", page)
    for figure in ("98.3 % — trusted", "87.5 %", "87.5 % / 90.0 %", "7.25", "98.5 % / 95.0 %", "0.0071"):
        assert figure in cells, figure
    assert "<td>generated (3)</td><td>62.5 %</td>" in page  # the sound table
    assert "<title>Spoken digits: generated voices, judged</title>" in page


def test_every_clip_plays_the_wav_it_was_given_in_the_row_of_its_digit(tmp_path):
    folder = tmp_path / "listen"
    page, given = write_judged_page(folder, mfcc_flatters=False)
    found = tags(page)
    audio = [attrs["src"] for tag, attrs in found if tag == "audio"]
    assert sorted(audio) == sorted(given)
    for src in audio:
        assert (folder / src).read_bytes() == given[src], src
    images = [attrs["src"] for tag, attrs in found if tag == "img"]
    # A mel image beside every clip the judge heard, none beside the two it could not.
    judged = [src for src in given if src not in ("generated/5_00.wav", "reference/ceiling_2.wav")]
    assert sorted(images) == sorted(src.replace(".wav", ".png") for src in judged)
    assert all(matplotlib.image.imread(folder / src).shape[:2] == (16, 24) for src in images)
    # Generated clips in one row per digit asked for, whatever the judge heard.
    rows = re.findall(r'<div class="label">([^<]*)</div><div class="clips">(.*?)</div></div>', page)
    assert [(label, re.findall(r'<audio [^>]*src="([^"]+)"', clips)) for label, clips in rows] == [
        ("3", ["generated/3_00.wav", "generated/3_01.wav"]),
        ("5", ["generated/5_00.wav"]),
    ]
    # The references in one row per clip, by digit: as recorded, the vocoder ceiling, the reconstruction.
    rows = re.findall(r'<tr><th class="row">([^<]*)</th>(.*?)</tr>', page)
    assert [(label, re.findall(r'<audio [^>]*src="([^"]+)"', clips)) for label, clips in rows] == [
        ("2", ["reference/real_2.wav", "reference/ceiling_2.wav", "reference/vae_2.wav"]),
        ("5", ["reference/real_5.wav", "reference/ceiling_5.wav", "reference/vae_5.wav"]),
    ]
    assert 'judge: 8 (75%) <span class="wrong">✗</span>' in page and "not judged: silent" in page
    verdicts = json.loads((folder / "verdicts.json").read_text(encoding="utf-8"))
    assert [(v["file"], v["expected"], v["verdict"]) for v in verdicts[:3]] == [
        ("generated/3_00.wav", 3, 3),
        ("generated/3_01.wav", 3, 8),
        ("generated/5_00.wav", 5, None),
    ]


@pytest.mark.parametrize("flatters", [True, False])
def test_a_judge_that_flatters_the_generator_is_called_out_at_the_top_and_only_then(tmp_path, flatters):
    page, _ = write_judged_page(tmp_path / "listen", mfcc_flatters=flatters)
    alerts = re.findall(r'<p class="warning" role="alert">([^<]*)</p>', page)
    if flatters:
        assert alerts == ["FLATTERS: the MFCC judge hears the generated clips better (97.0 %) than real recordings"]
        assert page.index('role="alert"') < page.index("<h2>Metrics</h2>")
        assert "<td>87.5 % / 97.0 % — the mfcc judge flatters</td>" in page
    else:
        assert alerts == [] and 'role="alert"' not in page
        assert "flatters" not in page


def test_mel_png_has_one_pixel_per_bin_and_low_frequencies_at_the_bottom(tmp_path):
    mel = np.full((16, 24), -80.0)
    mel[0, :] = 0.0  # the lowest mel band, loud
    save_mel_png(tmp_path / "m.png", mel, low=-80, high=0)
    image = matplotlib.image.imread(tmp_path / "m.png")
    assert image.shape[:2] == (16, 24)
    brightness = image[..., :3].sum(axis=2)
    assert brightness[-1].mean() > brightness[0].mean()  # bottom row brightest
    save_mel_png(tmp_path / "again.png", mel, low=-80, high=0)
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "m.png").read_bytes()


# ----------------------------------------------------------------- in a real browser


def test_page_loads_in_headless_chromium_with_every_player_and_image(tmp_path):
    page = make_page(tmp_path / "listen")
    assert browser_check(page, tmp_path / "profile") == "ok: 8 audio, 7 img"


def test_a_row_of_ten_clips_wraps_to_a_1400_px_window(tmp_path):
    page = make_page(tmp_path / "listen", row=10)  # ten clips of one digit, as the default run makes
    assert browser_check(page, tmp_path / "profile") == "ok: 15 audio, 14 img"


def test_the_browser_check_catches_an_undecodable_clip_and_a_missing_image(tmp_path):
    page = make_page(tmp_path / "listen", broken=True)
    check = browser_check(page, tmp_path / "profile")
    assert check.startswith("fail: 9 audio, 8 img; not loaded: ")
    assert set(check.split("not loaded: ")[1].split()) == {"clips/bad.wav", "clips/missing.png"}


def test_clips_of_an_unconditional_model_are_grouped_by_what_the_judge_heard(tmp_path):
    page, _ = write_judged_page(tmp_path / "listen", mfcc_flatters=False, conditional=False)
    rows = re.findall(r'<div class="label">([^<]*)</div><div class="clips">(.*?)</div></div>', page)
    assert [(label, re.findall(r'<audio [^>]*src="([^"]+)"', clips)) for label, clips in rows] == [
        ("heard 3", ["generated/3_00.wav"]),
        ("heard 8", ["generated/3_01.wav"]),
        ("not judged", ["generated/5_00.wav"]),
    ]
