"""DVC stage ``normalize``: speaker-disjoint splits scaled to [0, 1] in data/normalized."""

import argparse
from pathlib import Path

from speakdigits.files import write_json
from speakdigits.formats import features, normalized
from speakdigits.normalize import normalize
from speakdigits.params import load_params
from stages.common import Stage, entry_point

METRICS = Path("metrics/data.json")
DVC_STAGE = Stage(deps=(features.DIR,), params=("seed", "split"), outs=(normalized.DIR,), metrics=(METRICS,))


@entry_point()
def main(args: argparse.Namespace) -> None:
    params = load_params()
    summary = normalize(features.DIR, normalized.DIR, split=params.split, seed=params.seed)
    write_json(METRICS, summary)
    print(f"normalize: clips {summary['clips']}, speakers {summary['speakers']}")


if __name__ == "__main__":
    main()
