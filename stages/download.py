"""DVC stage ``download``: raw clips into data/raw (see speakdigits.raw)."""

from speakdigits.params import load_params
from speakdigits.acquire import build_raw
from stages.common import DOWNLOAD_CACHE_DIR, RAW_DIR, entry_point


@entry_point
def main() -> None:
    params = load_params()
    count = build_raw(RAW_DIR, data=params["data"], seed=params["seed"], cache_dir=DOWNLOAD_CACHE_DIR)
    print(f"download: {count} clips in {RAW_DIR}")


if __name__ == "__main__":
    main()
