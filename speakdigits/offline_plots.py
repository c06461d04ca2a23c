"""An HTML template that makes ``dvc plots show`` work offline.

DVC's plots page loads Vega, Vega-Lite and Vega-Embed from a CDN, so without a
network it is blank. This template carries the three libraries inline (the
bundle that vl-convert ships, the same versions every time for a pinned
vl-convert) and has no ``{scripts}`` placeholder, so DVC adds no CDN links;
``.dvc/config`` points ``plots.html_template`` at it.
"""

from __future__ import annotations

from pathlib import Path

import vl_convert

#: DVC's plot templates are Vega-Lite 5 specifications.
VEGA_LITE_VERSION = "5.20"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>speakdigits: DVC plots</title>
    <script type="text/javascript">
__BUNDLE__
    </script>
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
        img {{ max-width: 100%; }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def write_offline_template(path: str | Path) -> None:
    """Write the template (about 0.9 MB) to ``path``."""
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    if "</script" in bundle.lower():  # would end the inline script early
        raise RuntimeError("the Vega bundle contains '</script'; it cannot be inlined")
    # DVC fills the template with str.replace, not str.format, so the CSS braces are written single.
    page = PAGE.replace("{{", "{").replace("}}", "}").replace("__BUNDLE__", bundle)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(page, encoding="utf-8")
