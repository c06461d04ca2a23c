"""DVC stage ``download``: raw clips into data/raw (the format: speakdigits.formats.raw)."""

import argparse

from speakdigits.acquire import build_raw, download_cache
from speakdigits.formats import raw
from speakdigits.params import load_params
from stages.common import Stage, entry_point

DVC_STAGE = Stage(params=("data",), outs=(raw.DIR,))


@entry_point()
def main(args: argparse.Namespace) -> None:
    params = load_params()
    count = build_raw(raw.DIR, data=params.data, cache_dir=download_cache())
    print(f"download: {count} clips in {raw.DIR}")


if __name__ == "__main__":
    main()
