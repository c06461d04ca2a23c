"""The listening page: one self-contained HTML file beside the clips it plays.

The evaluate stage judges the clips (:mod:`speakdigits.evaluation`); this
module lays out what it found: :func:`write_listening_page` writes every clip,
its mel image, ``verdicts.json`` and ``index.html`` (:func:`render_page`), with
the metrics in a table at the top (:func:`headline`).

Opened from the file system, offline: every link is relative, and there is no
external script, style sheet or font. A small inline script checks, once the
page has loaded, that every ``<audio>`` element could read its file's metadata
and every image decoded, and shows the result at the bottom of the page; it
also writes it to ``<body data-check="...">`` so that a headless browser can
test the page (``ok: N audio, M img`` or ``fail: ...``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np

from speakdigits.files import write_json

DIR = Path("data/listen")
INDEX_HTML = "index.html"
VERDICTS_JSON = "verdicts.json"
#: The map of the test clips' latent vectors (a DVC image plot too).
LATENT_MAP_PNG = "latent_map.png"
# Where the page's files go, relative to it.
GENERATED_SUBDIR = "generated"
REFERENCE_SUBDIR = "reference"
VOICES_SUBDIR = "voices"

PAGE_TITLE = "Spoken digits: generated voices, judged"
PAGE_INTRO = [
    "Every clip below was heard by two digit judges, from its audio. The first (the classify stage's) turns the "
    "wav file into a log-mel image exactly as the training clips were: the image above each player is that mel. "
    "The second (the mfcc_judge stage's) hears it through a front end of its own, MFCCs of the audio at 16 kHz. "
    "The captions give each judge's verdict and confidence (✓ when it is the digit asked for), then how the "
    "clip sounds: the share of its speech that has a pitch (pYIN), its median f0, and DNSMOS's overall rating.",
    "For scale: DiffWave (ICLR 2021) reached 91.2 % accuracy and inception score 6.63 on class-conditional "
    "spoken digits, where real test clips scored 98.76 % and 8.47; the original student VAE was about 80 % "
    "recognisable by ear on 20 samples.",
]
REFERENCE_HEADER = [
    "digit",
    "real test clip never heard by the judges, as the pipeline prepares it",
    "vocoder ceiling: its own mel and pitch track → the vocoder",
    "VAE reconstruction (z = μ) → the vocoder",
]
VOICES_INTRO = (
    "Each row starts with a real test clip the VAE never heard, followed by its latent vector (the encoder's "
    "mean) decoded with every digit: the same voice, if the latent vector holds it, saying 0 to 9. The third "
    "caption is the speaker judge's verdict (✓ when it hears the source speaker). Then one voice made from "
    "several takes of a test speaker (the mean of their voices) says every digit, and the last row walks in a "
    "straight line from one clip's latent vector to another's."
)
LATENT_MAP_CAPTION = (
    "The test speakers' clips in latent space (the encoder's means, projected on their two principal "
    "components), coloured by digit and by speaker. The decoder is told the digit, so the latent vector "
    "need not hold it: where the digits form clusters, the digit and the voice are not separated."
)
PAGE_NOTES = [
    "The vocoder ceiling is what a perfect generator of mels and pitch tracks would sound like with this "
    "pipeline's vocoder; generated clips cannot be judged better than it, except by chance.",
    "verdicts.json beside this page lists every clip's verdicts and measures.",
]


@dataclass(frozen=True)
class Heard:
    """One clip the judge heard, as the evaluate stage hands it to the page.

    Parameters
    ----------
    name : str
        File stem on the page (``<name>.wav``, ``<name>.png``).
    title : str
        Short label shown above it.
    wav : bytes
        The clip.
    mel_db : numpy.ndarray or None
        Its log-mel image as the judge saw it (None: it could not be judged).
    expected : int or None
        The class it should be (the digit asked for, the real label).
    verdict : int or None
        The judge's class, None when it could not judge the clip.
    confidence : float or None
        The judge's probability of its verdict.
    problem : str or None
        Why it could not be judged.
    second_verdict, second_confidence : int or None, float or None
        The MFCC judge's class and probability (None when it could not hear the clip).
    sound : dict or None
        How it sounds (:func:`speakdigits.quality.measure`).
    voice : str or None
        What the speaker judge heard (a caption).
    """

    name: str
    title: str
    wav: bytes
    mel_db: np.ndarray | None
    expected: int | None
    verdict: int | None
    confidence: float | None
    problem: str | None
    second_verdict: int | None = None
    second_confidence: float | None = None
    sound: dict | None = None
    voice: str | None = None


@dataclass(frozen=True)
class Clip:
    """One clip on the page.

    Parameters
    ----------
    audio : str
        Path of its wav file, relative to the page.
    image : str or None
        Path of its mel PNG, relative to the page (None: no image).
    title : str
        Short label shown above it.
    verdict : str or None
        The judge's class, None when it could not judge the clip.
    confidence : float or None
        The judge's probability of its verdict.
    expected : str or None
        The class the clip should be (requested digit, real label); the
        verdict is marked right or wrong against it.
    note : str or None
        Shown instead of a verdict (e.g. why the clip could not be judged).
    second_verdict, second_confidence : str or None, float or None
        The second judge's class and probability.
    sound : str or None
        A line on how it sounds.
    voice : str or None
        A line on whose voice the speaker judge heard.
    """

    audio: str
    image: str | None
    title: str
    verdict: str | None = None
    confidence: float | None = None
    expected: str | None = None
    note: str | None = None
    second_verdict: str | None = None
    second_confidence: float | None = None
    sound: str | None = None
    voice: str | None = None


def save_mel_png(path: Path, mel_db: np.ndarray, *, low: float, high: float) -> None:
    """One log-mel image (dB, ``n_mels x frames``) as a PNG, one pixel per bin, low frequencies at the bottom.

    ``low`` and ``high`` fix the colour scale, so that images are comparable.
    """
    matplotlib.image.imsave(
        path,
        np.asarray(mel_db, dtype=np.float32),
        cmap="magma",
        vmin=low,
        vmax=high,
        origin="lower",
        metadata={"Software": None},
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.4em; vertical-align: top; text-align: left; }
th.row { font-size: 1.6em; text-align: center; vertical-align: middle; }
figure { margin: 0; width: 210px; }
figure img { width: 128px; height: 128px; image-rendering: pixelated; display: block; }
figure audio { width: 200px; height: 32px; }
figcaption { font-size: 0.85em; }
.clip-row { display: flex; align-items: center; border-top: 1px solid #ccc; padding: 0.4em 0; }
.clip-row .label { flex: none; width: 2.5em; font-size: 1.6em; font-weight: bold; text-align: center; }
.clip-row .label.wide { width: 9em; font-size: 0.95em; overflow-wrap: anywhere; }
figure.map { width: auto; }
figure.map img { width: 880px; max-width: 100%; height: auto; image-rendering: auto; }
.clip-row .clips { display: flex; flex-wrap: wrap; gap: 0.6em; min-width: 0; }
.right { color: #176d2b; font-weight: bold; }
.wrong { color: #b3261e; font-weight: bold; }
.note { color: #666; }
.warning { color: #fff; background: #b3261e; padding: 0.8em; font-weight: bold; }
#self-check { color: #666; font-size: 0.85em; }
"""

# Runs after load: every <audio> must have read its metadata (a positive duration,
# no error) and every <img> must have decoded. Waits for players still loading.
CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var audios = Array.prototype.slice.call(document.querySelectorAll('audio'));
  var images = Array.prototype.slice.call(document.querySelectorAll('img'));
  var waits = audios.map(function (a) {
    return new Promise(function (resolve) {
      function done() { resolve(!a.error && a.readyState >= 1 && a.duration > 0); }
      if (a.error || a.readyState >= 1) { done(); return; }
      a.addEventListener('loadedmetadata', done, {once: true});
      a.addEventListener('error', done, {once: true});
    });
  });
  Promise.all(waits).then(function (ok) {
    var bad = [];
    audios.forEach(function (a, i) { if (!ok[i]) bad.push(a.getAttribute('src')); });
    images.forEach(function (im) { if (!(im.complete && im.naturalWidth > 0)) bad.push(im.getAttribute('src')); });
    // A page wider than the window hides clips off to the side (a row of ten once showed six).
    var wide = document.documentElement.scrollWidth;
    if (wide > window.innerWidth) {
      bad.push('(the page is ' + wide + ' px wide in a ' + window.innerWidth + ' px window)');
    }
    var counts = audios.length + ' audio, ' + images.length + ' img';
    var result = bad.length ? 'fail: ' + counts + '; not loaded: ' + bad.join(' ') : 'ok: ' + counts;
    document.body.setAttribute('data-check', result);
    document.getElementById('self-check').textContent = 'Self-check: ' + (bad.length
      ? 'these files did not load: ' + bad.join(', ')
      : 'all ' + audios.length + ' players and ' + images.length + ' images loaded.');
  });
});
"""


def _clip_cell(clip: Clip) -> str:
    e = html.escape
    parts = [f"<figure><figcaption>{e(clip.title)}</figcaption>"]
    if clip.image is not None:
        parts.append(f'<img src="{e(clip.image)}" alt="log-mel spectrogram of {e(clip.title)}">')
    parts.append(f'<audio controls preload="auto" src="{e(clip.audio)}"></audio>')
    for label, verdict, confidence in (
        ("judge", clip.verdict, clip.confidence),
        ("MFCC judge", clip.second_verdict, clip.second_confidence),
    ):
        if verdict is None:
            continue
        mark = ""
        if clip.expected is not None:
            mark = ' <span class="right">✓</span>' if verdict == clip.expected else ' <span class="wrong">✗</span>'
        sure = f" ({confidence:.0%})" if confidence is not None else ""
        parts.append(f"<figcaption>{e(label)}: {e(verdict)}{e(sure)}{mark}</figcaption>")
    for line in (clip.voice, clip.sound):
        if line:
            parts.append(f'<figcaption class="note">{e(line)}</figcaption>')
    if clip.note:
        parts.append(f'<figcaption class="note">{e(clip.note)}</figcaption>')
    parts.append("</figure>")
    return "".join(parts)


def _table(rows: list[tuple[str, list[Clip]]], header: list[str] | None = None) -> str:
    e = html.escape
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
    for label, clips in rows:
        cells = "".join(f"<td>{_clip_cell(clip)}</td>" for clip in clips)
        out.append(f'<tr><th class="row">{e(label)}</th>{cells}</tr>')
    out.append("</table>")
    return "\n".join(out)


def _rows(rows: list[tuple[str, list[Clip]]], *, wide_labels: bool = False) -> str:
    """Rows of clips that wrap to the window's width, however many a row holds (labels of a few words:
    ``wide_labels``)."""
    e = html.escape
    label_class = "label wide" if wide_labels else "label"
    return "\n".join(
        f'<div class="clip-row"><div class="{label_class}">{e(label)}</div><div class="clips">'
        + "".join(_clip_cell(clip) for clip in clips)
        + "</div></div>"
        for label, clips in rows
    )


def render_page(
    *,
    title: str,
    headline: list[tuple[str, str]],
    intro: list[str],
    generated: list[tuple[str, list[Clip]]],
    references: list[tuple[str, list[Clip]]],
    reference_header: list[str],
    notes: list[str],
    warnings: list[str] = (),
    sound: tuple[list[str], list[list[str]]] | None = None,
    voices: list[tuple[str, list[Clip]]] = (),
    latent_map: str | None = None,
) -> str:
    """The page's HTML.

    Parameters
    ----------
    title : str
        Page title.
    headline : list of (str, str)
        Metric name and formatted value, shown as a table at the top.
    intro, notes : list of str
        Paragraphs of plain text above the metrics and at the end.
    generated : list of (str, list of Clip)
        Rows of generated clips, each with its label (the digit).
    references : list of (str, list of Clip)
        Rows of reference clips.
    reference_header : list of str
        Column titles of the reference table (the first is the label column).
    warnings : list of str
        Each shown in a red box above everything else (an unreliable judge, a judge that flatters).
    sound : (list of str, list of list of str), optional
        The header and rows of a table of how each set of clips sounds.
    voices : list of (str, list of Clip)
        Rows of the voices section (none: no section).
    latent_map : str, optional
        Path of the latent map's image, relative to the page.
    """
    e = html.escape
    metrics = "\n".join(f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in headline)
    paragraphs = "\n".join(f"<p>{e(text)}</p>" for text in intro)
    endnotes = "\n".join(f'<p class="note">{e(text)}</p>' for text in notes)
    alert = "\n".join(f'<p class="warning" role="alert">{e(warning)}</p>' for warning in warnings)
    sound_table = ""
    if sound is not None:
        header, rows = sound
        cells = ["<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
        cells += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in rows]
        sound_table = "<h2>How they sound</h2>\n<table>\n" + "\n".join(cells) + "\n</table>"
    voice_section = ""
    if voices or latent_map:
        voice_section = "<h2>Voices: one voice saying every digit, and from one voice to another</h2>\n"
        voice_section += "<p>" + e(VOICES_INTRO) + "</p>\n" + _rows(list(voices), wide_labels=True)
        if latent_map:
            voice_section += (
                f'\n<figure class="map"><img src="{e(latent_map)}" alt="the latent map">'
                f"<figcaption>{e(LATENT_MAP_CAPTION)}</figcaption></figure>"
            )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{e(title)}</title>
<style>{STYLE}</style>
</head>
<body data-check="pending">
<h1>{e(title)}</h1>
{alert}
{paragraphs}
<h2>Metrics</h2>
<table>
{metrics}
</table>
{sound_table}
<h2>Generated clips</h2>
{_rows(generated)}
<h2>References: real test clips, the vocoder ceiling and the VAE's reconstructions</h2>
{_table(references, reference_header)}
{voice_section}
{endnotes}
<p id="self-check">Self-check: waiting for the players and images to load…</p>
<script>{CHECK_SCRIPT}</script>
</body>
</html>
"""


def write_page(out_dir: Path, **content) -> Path:
    """Write :func:`render_page`'s HTML to ``out_dir/index.html`` and return its path."""
    path = Path(out_dir) / INDEX_HTML
    path.write_text(render_page(**content), encoding="utf-8")
    return path


def warnings(metrics: dict) -> list[str]:
    """The evaluate stage's plain warnings: an unreliable digit judge, a judge that flatters the generator (its
    generated clips or its conversions), a speaker judge that names the source speaker without hearing a voice."""
    found = (
        metrics["judge"].get("warning"),
        *(j.get("warning") for j in metrics["judges"].values()),
        *(j.get("warning") for j in metrics.get("voices", {}).get("judges", {}).values()),
        metrics.get("voices", {}).get("speaker_bias", {}).get("warning"),
        (metrics.get("voices", {}).get("known_voices") or {}).get("warning"),
        (metrics.get("voices", {}).get("take_voices") or {}).get("warning"),
    )
    return [w for w in found if w]


def percent(value: float | None) -> str:
    """``'97.5 %'``, or ``'–'`` for a missing or NaN value."""
    return "–" if value is None or value != value else f"{100 * value:.1f} %"


def number(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, or ``'–'`` for a missing or NaN value."""
    return "–" if value is None or value != value else f"{value:.{digits}g}"


def headline(metrics: dict) -> list[tuple[str, str]]:
    """The page's metric table, from the evaluate stage's metrics: ``(name, formatted value)`` rows."""
    gen, real, ceiling, vae = (metrics[k] for k in ("generated", "real", "vocoder_ceiling", "vae"))
    judge, judges, novel = metrics["judge"], metrics["judges"], metrics["novelty"]
    rows = [
        (
            "The digit judge (log-mel) itself: accuracy on real takes it never heard (every speaker)",
            percent(judge["accuracy"])
            + (" — trusted" if judge["reliable"] else f" — UNRELIABLE (needs {percent(judge['trusted_accuracy'])})"),
        ),
        (
            "The MFCC judge itself: accuracy on real takes it never heard (every speaker)",
            percent(judges["mfcc"]["accuracy"]),
        ),
    ]
    if gen["conditional"]:
        rows += [
            (
                "Generated: share that says the digit asked for (the lower of the two judges)",
                percent(gen.get("accuracy")),
            ),
            (
                "Generated: digit judge / MFCC judge",
                f"{percent(gen.get('accuracy_mel'))} / {percent(gen.get('accuracy_mfcc'))}"
                + "".join(f" — the {n} judge flatters" for n in ("mel", "mfcc") if judges[n]["flatters"]),
            ),
        ]
    rows += [
        ("Generated: inception score (digit judge; higher is better, 10 at most)", number(gen.get("inception_score"))),
        ("Generated: mean judge confidence", percent(gen.get("mean_confidence"))),
        (
            "Generated: Fréchet distance to real test clips (judge embeddings; lower is better)",
            number(gen.get("frechet_distance")) + f" (as many real clips of other speakers: "
            f"{number(real.get('frechet_distance'))})",
        ),
        (
            "Generated: judge's verdicts, digit: count",
            ", ".join(f"{d}: {n}" for d, n in gen.get("class_histogram", {}).items()) or "–",
        ),
        (
            "Generated: voiced frames with f0 within the training speakers' range "
            f"({' – '.join(f'{v:.0f}' for v in metrics.get('training_f0', [])) or '–'} Hz)",
            percent(gen.get("f0_in_range")),
        ),
        (
            f"Real test-speaker clips the judges never heard ({real['clips']}): digit judge / MFCC judge",
            f"{percent(real.get('accuracy'))} / {percent(real.get('accuracy_mfcc'))}",
        ),
        (
            "Real test-speaker clips the judges never heard: inception score (higher is better)",
            number(real.get("inception_score")),
        ),
        (
            f"Vocoder ceiling ({ceiling['clips']} test clips, own mel and pitch → vocoder): digit judge / MFCC judge",
            f"{percent(ceiling.get('accuracy'))} / {percent(ceiling.get('accuracy_mfcc'))} (same clips as "
            f"prepared: {percent(ceiling.get('real_accuracy_same_clips'))} / "
            f"{percent(ceiling.get('real_accuracy_mfcc_same_clips'))})",
        ),
        ("VAE on test clips: reconstruction MSE (z = μ, normalised mels)", number(vae.get("reconstruction_mse"))),
        ("VAE on test clips: judge accuracy on the reconstructed mels", percent(vae.get("judge_accuracy_mel"))),
        (
            "VAE reconstructions vocoded (reference clips): digit judge / MFCC judge",
            f"{percent(vae.get('judge_accuracy_resynthesised'))} / "
            f"{percent(vae.get('mfcc_judge_accuracy_resynthesised'))}",
        ),
        (
            "Novelty: median distance to the nearest training mel, generated / reconstructed unheard speakers",
            f"{number(novel.get('generated_nearest_train'))} / {number(novel.get('unheard_nearest_train'))} "
            f"(ratio {number(novel.get('ratio'))}; 1 or more: as new as an unheard speaker, near 0: replays)",
        ),
        (
            "Novelty: generated clips nearer the training set than 99 % of unheard speakers' are (copies)",
            percent(novel.get("copies")),
        ),
    ]
    return rows + voice_headline(metrics.get("voices", {}))


def voice_headline(voices: dict) -> list[tuple[str, str]]:
    """The page's rows on voices: conversion to every other digit, the speaker judge, the latent map."""
    rows = []
    if "converted" in voices:
        rows.append(
            (
                f"Voices: test clips converted to every other digit ({voices['converted_clips']}), heard as the new "
                "digit (the lower of the two judges; digit judge / MFCC judge)",
                f"{percent(voices['converted'])} ({percent(voices['converted_mel'])} / "
                f"{percent(voices['converted_mfcc'])})"
                + "".join(
                    f" — the {n} judge flatters"
                    for n in ("mel", "mfcc")
                    if voices.get("judges", {}).get(n, {}).get("flatters")
                ),
            )
        )
    judge = voices.get("speaker_judge", {})
    if "voice_kept" in voices:
        rows += [
            (
                f"The speaker judge itself ({judge['speakers']} speakers, chance {percent(judge['chance'])}): "
                "accuracy on real takes it never heard",
                percent(judge["accuracy"]),
            ),
            (
                "Voices: converted clips heard as their source speaker (voice kept)",
                f"{percent(voices['voice_kept'])} (the source clips themselves: {percent(voices['voice_kept_real'])}, "
                f"through the vocoder: {percent(voices['voice_kept_vocoder'])}, reconstructed: "
                f"{percent(voices['voice_kept_reconstructed'])}, their voices said as their own digits as the "
                f"conversions are: {percent(voices.get('voice_kept_own_digit'))})",
            ),
        ]
    bias = voices.get("speaker_bias", {}).get("voice_kept_without_voice")
    if bias is not None:
        rows.append(("Voices: the same digits said with no voice at all, heard as the source speaker", percent(bias)))
    known = voices.get("known_voices")
    if known:
        rows.append(
            (
                f"Voices: {known['speakers']} training speakers' voices (generate --speaker) saying every digit: "
                "heard as the digit (the lower of the two judges) / as the speaker (with no voice at all)",
                f"{percent(known['said'])} / {percent(known['kept'])} ({percent(known.get('kept_without_voice'))})",
            )
        )
    takes = voices.get("take_voices")
    if takes:
        gender = f"; as their gender {percent(takes['gender_kept'])}" if "gender_kept" in takes else ""
        rows.append(
            (
                f"Voices: {takes['voices']} voices of the test speakers, each from {takes['takes']} takes they said "
                "(generate --like with several recordings), saying every digit: heard as the digit (the lower of "
                "the two judges) / as the speaker (with no voice at all)",
                f"{percent(takes['said'])} / {percent(takes['kept'])} ({percent(takes.get('kept_without_voice'))})"
                + gender,
            )
        )
    if "gender_kept" in voices:
        rows.append(
            (
                "Voices: converted clips heard as their source speaker's gender by the MFCC gender judge (its "
                f"accuracy on speakers it never heard: {percent(voices['gender_judge']['accuracy'])})",
                f"{percent(voices['gender_kept'])} (the source clips: {percent(voices['gender_kept_real'])}, "
                f"through the vocoder: {percent(voices['gender_kept_vocoder'])})",
            )
        )
    if "gender_mel" in voices:
        mel = voices["gender_mel"]
        rows.append(
            (
                "Voices: the same by the log-mel gender judge (classify), which hears the vocoder's clips worse",
                f"{percent(mel['gender_kept'])} (the source clips: {percent(mel['gender_kept_real'])}, "
                f"through the vocoder: {percent(mel['gender_kept_vocoder'])})",
            )
        )
    space = voices.get("latent_map", {})
    if "digit_separation" in space:
        rows.append(
            (
                "Latent map: test clips nearest their own digit's / speaker's mean latent vector "
                "(chance: one in the number of digits / speakers; low digit, high speaker: the voice is in z)",
                f"{percent(space['digit_separation'])} / {percent(space.get('speaker_separation'))}"
                + (" (one test speaker)" if space.get("speakers") == 1 else ""),
            )
        )
    return rows


SOUND_HEADER = [
    "set (clips)",
    "voiced share (pYIN)",
    "f0, 5–50–95 % (Hz)",
    "DNSMOS SIG",
    "BAK",
    "OVRL",
    "P.808",
    "PESQ-WB",
]


def sound_rows(metrics: dict) -> list[list[str]]:
    """The page's table of how each set sounds (:func:`speakdigits.quality.summarize` of each)."""
    rows = []
    for label, key in (
        ("generated", "generated"),
        ("real (test speakers, as prepared)", "real"),
        ("vocoder ceiling", "vocoder_ceiling"),
        ("VAE reconstructions, vocoded", "vae"),
    ):
        sound = metrics[key].get("sound", {})
        rows.append(
            [
                f"{label} ({sound.get('clips', 0)})",
                percent(sound.get("voiced")),
                " – ".join(f"{v:.0f}" for v in sound.get("f0", [])) or "–",
                *(number(sound.get(k)) for k in ("sig", "bak", "ovrl", "p808")),
                number(sound.get("pesq")),
            ]
        )
    return rows


def sound_line(sound: dict | None) -> str | None:
    """One clip's measures as a caption: voiced share, median f0, DNSMOS OVRL (and PESQ where rated)."""
    if not sound or "problem" in sound:
        return None
    f0 = "–" if sound.get("f0_median") is None else f"{sound['f0_median']:.0f} Hz"
    line = f"voiced {sound['voiced']:.0%}, f0 {f0}, OVRL {sound['ovrl']:.2f}"
    return line + (f", PESQ {sound['pesq']:.2f}" if sound.get("pesq") is not None else "")


def _place(
    out_dir: Path, subdir: str, heard: Heard, *, classes: list[str], mel_range: tuple[float, float], verdict_log: list
) -> Clip:
    """Write a clip's wav (and its mel PNG, if it was judged) under ``out_dir/subdir``, log its verdicts
    for ``verdicts.json``, and return it as the page shows it."""
    folder = out_dir / subdir
    folder.mkdir(exist_ok=True)
    (folder / f"{heard.name}.wav").write_bytes(heard.wav)
    image = None
    if heard.mel_db is not None:
        save_mel_png(folder / f"{heard.name}.png", heard.mel_db, low=mel_range[0], high=mel_range[1])
        image = f"{subdir}/{heard.name}.png"
    verdict_log.append(
        {
            "file": f"{subdir}/{heard.name}.wav",
            "expected": heard.expected,
            "verdict": heard.verdict,
            "confidence": heard.confidence,
            "problem": heard.problem,
            "mfcc_verdict": heard.second_verdict,
            "mfcc_confidence": heard.second_confidence,
            "sound": None if heard.sound is None else {k: v for k, v in heard.sound.items() if k != "f0"},
        }
    )
    return Clip(
        audio=f"{subdir}/{heard.name}.wav",
        image=image,
        title=heard.title,
        verdict=None if heard.verdict is None else classes[heard.verdict],
        confidence=heard.confidence,
        expected=None if heard.expected is None else classes[heard.expected],
        note=None if heard.verdict is not None else f"not judged: {heard.problem}",
        second_verdict=None if heard.second_verdict is None else classes[heard.second_verdict],
        second_confidence=heard.second_confidence,
        sound=sound_line(heard.sound),
        voice=heard.voice,
    )


def _generated_rows(
    clips: list[Clip], generated: list[Heard], *, classes: list[str], conditional: bool
) -> list[tuple[str, list[Clip]]]:
    """The generated clips in rows: by the digit asked for or, when nothing was asked for, by what the
    judge heard (and a row of clips it could not judge)."""
    if conditional:
        return [
            (str(d), [c for c, h in zip(clips, generated) if h.expected == d])
            for d in sorted({h.expected for h in generated})
        ]
    rows = [(f"heard {name}", [c for c in clips if c.verdict == name]) for name in classes]
    unjudged = [c for c in clips if c.verdict is None]
    return [row for row in rows if row[1]] + ([("not judged", unjudged)] if unjudged else [])


def write_listening_page(
    out_dir: Path,
    *,
    metrics: dict,
    classes: list[str],
    mel_range: tuple[float, float],
    generated: list[Heard],
    references: list[list[Heard]],
    voices: list[tuple[str, list[Heard]]] = (),
    latent_map: str | None = None,
) -> None:
    """The listening page and its files in ``out_dir``: wavs, mel PNGs, ``verdicts.json``, ``index.html``.

    Parameters
    ----------
    metrics : dict
        The evaluate stage's metrics (:func:`headline`, :func:`sound_rows`; the warnings of ``judge`` and
        ``judges``, if any).
    classes : list of str
        The judge's class names, which ``expected`` and ``verdict`` index.
    mel_range : (float, float)
        dB at the two ends of every mel image's colour scale.
    generated : list of Heard
        The generated clips, in order.
    references : list of list of Heard
        One row per reference clip: the clip as recorded, its vocoder ceiling
        and its VAE reconstruction. The page orders them by digit.
    voices : list of (str, list of Heard)
        Rows of the voices section, each with its label: a source clip and its voice saying every
        digit, and the clips from one voice to another.
    latent_map : str, optional
        The latent map's PNG, relative to the page (already in ``out_dir``).
    """
    verdict_log = []

    def place(subdir: str, heard: Heard) -> Clip:
        return _place(Path(out_dir), subdir, heard, classes=classes, mel_range=mel_range, verdict_log=verdict_log)

    clips = [place(GENERATED_SUBDIR, heard) for heard in generated]
    rows = _generated_rows(clips, generated, classes=classes, conditional=metrics["generated"]["conditional"])
    by_digit = sorted(range(len(references)), key=lambda i: (references[i][0].expected, i))
    reference_rows = [
        (str(references[i][0].expected), [place(REFERENCE_SUBDIR, heard) for heard in references[i]]) for i in by_digit
    ]
    voice_rows = [(label, [place(VOICES_SUBDIR, heard) for heard in row]) for label, row in voices]
    write_page(
        out_dir,
        title=PAGE_TITLE,
        headline=headline(metrics),
        intro=PAGE_INTRO,
        warnings=warnings(metrics),
        sound=(SOUND_HEADER, sound_rows(metrics)),
        generated=rows,
        references=reference_rows,
        reference_header=REFERENCE_HEADER,
        voices=voice_rows,
        latent_map=latent_map,
        notes=PAGE_NOTES,
    )
    write_json(Path(out_dir) / VERDICTS_JSON, verdict_log)
