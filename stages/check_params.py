"""DVC stage ``check_params``: refuse a bad params.yaml before any stage loses its outputs.

DVC removes a stage's outputs before it runs the stage's command, so a value
that only the stage itself refuses (``dvc exp run -S latent_dim=0``) would
cost the user the previous model. This stage tracks every key of params.yaml
(an unknown one included) and every other stage depends on its output, so DVC
runs it first whenever params.yaml changes and stops there, with one line, when
the file is bad. Its output is the same few bytes whenever the file is good, so
it never makes another stage rerun.
"""

import argparse
from pathlib import Path

from speakdigits.acquire import check_source
from speakdigits.params import load_params
from stages.common import EVERY_PARAM, Stage, entry_point

PARAMS_CHECKED = Path("data/params_checked.txt")
CHECKED = "params.yaml: every key known, every value allowed, the data source there\n"
DVC_STAGE = Stage(
    params=EVERY_PARAM,
    outs=(PARAMS_CHECKED,),
    checked_params=False,
    note="First whenever params.yaml changes: it tracks every key (a misspelt one too) and every stage "
    "depends on its output, so a bad value stops the run here, before DVC removes any stage's previous "
    "outputs. A good params.yaml gives the same output bytes, so this stage alone never reruns another.",
)


@entry_point()
def main(args: argparse.Namespace) -> None:
    params = load_params()
    check_source(params.data.source, Path.cwd())
    PARAMS_CHECKED.parent.mkdir(parents=True, exist_ok=True)
    PARAMS_CHECKED.write_text(CHECKED, encoding="utf-8")
    print(f"check_params: params.yaml is valid ({PARAMS_CHECKED})")


if __name__ == "__main__":
    main()
