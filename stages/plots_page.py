"""DVC stage ``plots_page``: the template that lets ``dvc plots show`` work offline.

Writes data/plots_template.html, which .dvc/config names as plots.html_template:
Vega, Vega-Lite and Vega-Embed inline instead of from a CDN.
"""

import argparse
from pathlib import Path

from speakdigits.offline_plots import write_offline_template
from stages.common import Stage, entry_point

PLOTS_TEMPLATE = Path("data/plots_template.html")  # .dvc/config's plots.html_template
DVC_STAGE = Stage(
    outs=(PLOTS_TEMPLATE,),
    checked_params=False,
    note="Not a step of the pipeline: the page template that makes `dvc plots show` work offline "
    "(.dvc/config points plots.html_template at its output).",
)


@entry_point()
def main(args: argparse.Namespace) -> None:
    write_offline_template(PLOTS_TEMPLATE)
    print(f"plots_page: {PLOTS_TEMPLATE} (dvc plots show now works offline)")


if __name__ == "__main__":
    main()
