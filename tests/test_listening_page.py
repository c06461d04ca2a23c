"""The listening page: self-contained HTML, and, in a real headless browser
(Debian's chromium), every player has a decodable source and every image loads.

The page checks itself once loaded and writes the result into
``<body data-check="...">``; chromium's ``--dump-dom`` hands the DOM back after
the page's scripts ran. Where chromium is not installed the browser tests skip
and say so (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import numpy as np

from speakdigits.listening import Clip, render_page, save_mel_png, write_page
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


def test_render_page_needs_no_files():
    page = render_page(title="t", headline=[], intro=[], generated=[], references=[], reference_header=[], notes=[])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


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
