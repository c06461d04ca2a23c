"""DVC stage ``extract``: data/raw clips to log-mel features in data/features."""

import argparse

from speakdigits.features import extract
from speakdigits.params import load_params
from stages.common import FEATURES_DIR, RAW_DIR, entry_point


@entry_point()
def main(args: argparse.Namespace) -> None:
    params = load_params()
    report = extract(RAW_DIR, FEATURES_DIR, params["mel"])
    print(f"extract: {report['clips_used']} of {report['clips_found']} clips from {report['speakers']} speakers, "
          f"{len(report['skipped'])} skipped (see {FEATURES_DIR}/report.json)")
    for note in report["metadata_notes"]:
        print(f"extract: metadata: {note}")


if __name__ == "__main__":
    main()
