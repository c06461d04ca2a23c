"""DVC stage ``extract``: data/raw clips to log-mel features in data/features."""

from pathlib import Path

from speakdigits.features import extract
from speakdigits.params import load_params
from stages.common import entry_point

RAW_DIR = Path("data/raw")
FEATURES_DIR = Path("data/features")


@entry_point
def main() -> None:
    params = load_params()
    report = extract(RAW_DIR, FEATURES_DIR, params["mel"])
    print(f"extract: {report['clips_used']} of {report['clips_found']} clips from {report['speakers']} speakers, "
          f"{len(report['skipped'])} skipped (see {FEATURES_DIR}/report.json)")
    for note in report["metadata_notes"]:
        print(f"extract: metadata: {note}")


if __name__ == "__main__":
    main()
