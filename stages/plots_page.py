"""DVC stage ``plots_page``: the template that lets ``dvc plots show`` work offline.

Writes data/plots_template.html, which .dvc/config names as plots.html_template:
Vega, Vega-Lite and Vega-Embed inline instead of from a CDN.
"""

import argparse

from speakdigits.plots_page import write_offline_template
from stages.common import PLOTS_TEMPLATE, entry_point


@entry_point()
def main(args: argparse.Namespace) -> None:
    write_offline_template(PLOTS_TEMPLATE)
    print(f"plots_page: {PLOTS_TEMPLATE} (dvc plots show now works offline)")


if __name__ == "__main__":
    main()
