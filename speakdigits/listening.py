"""The listening page: one self-contained HTML file beside the clips it plays.

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

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402

INDEX_HTML = "index.html"


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
    """

    audio: str
    image: str | None
    title: str
    verdict: str | None = None
    confidence: float | None = None
    expected: str | None = None
    note: str | None = None


def save_mel_png(path: Path, mel_db: np.ndarray, *, low: float, high: float) -> None:
    """One log-mel image (dB, ``n_mels x frames``) as a PNG, one pixel per bin, low frequencies at the bottom.

    ``low`` and ``high`` fix the colour scale, so that images are comparable.
    """
    matplotlib.image.imsave(path, np.asarray(mel_db, dtype=np.float32), cmap="magma", vmin=low, vmax=high,
                            origin="lower", metadata={"Software": None})


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.4em; vertical-align: top; text-align: left; }
th.row { font-size: 1.6em; text-align: center; vertical-align: middle; }
figure { margin: 0; width: 210px; }
figure img { width: 128px; height: 128px; image-rendering: pixelated; display: block; }
figure audio { width: 200px; height: 32px; }
figcaption { font-size: 0.85em; }
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
    parts = [f'<figure><figcaption>{e(clip.title)}</figcaption>']
    if clip.image is not None:
        parts.append(f'<img src="{e(clip.image)}" alt="log-mel spectrogram of {e(clip.title)}">')
    parts.append(f'<audio controls preload="auto" src="{e(clip.audio)}"></audio>')
    if clip.verdict is not None:
        mark = ""
        if clip.expected is not None:
            mark = ' <span class="right">✓</span>' if clip.verdict == clip.expected else ' <span class="wrong">✗</span>'
        confidence = f" ({clip.confidence:.0%})" if clip.confidence is not None else ""
        parts.append(f"<figcaption>judge: {e(clip.verdict)}{e(confidence)}{mark}</figcaption>")
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


def render_page(*, title: str, headline: list[tuple[str, str]], intro: list[str],
                generated: list[tuple[str, list[Clip]]], references: list[tuple[str, list[Clip]]],
                reference_header: list[str], notes: list[str], warning: str | None = None) -> str:
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
    warning : str, optional
        Shown in a red box above everything else (an unreliable judge).
    """
    e = html.escape
    metrics = "\n".join(f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in headline)
    paragraphs = "\n".join(f"<p>{e(text)}</p>" for text in intro)
    endnotes = "\n".join(f"<p class=\"note\">{e(text)}</p>" for text in notes)
    alert = f'<p class="warning" role="alert">{e(warning)}</p>' if warning else ""
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
<h2>Generated clips</h2>
{_table(generated)}
<h2>References: real test clips, the vocoder ceiling and the VAE's reconstructions</h2>
{_table(references, reference_header)}
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
