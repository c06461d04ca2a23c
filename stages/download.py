"""DVC stage ``download``: raw clips into data/raw (see speakdigits.raw)."""

import argparse

from speakdigits.acquire import build_raw, download_cache
from speakdigits.params import load_params
from stages.common import RAW_DIR, entry_point


@entry_point()
def main(args: argparse.Namespace) -> None:
    params = load_params()
    count = build_raw(RAW_DIR, data=params["data"], cache_dir=download_cache())
    print(f"download: {count} clips in {RAW_DIR}")


if __name__ == "__main__":
    main()
