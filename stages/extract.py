"""DVC stage ``extract``: data/raw clips to log-mel features in data/features."""

import argparse

from speakdigits.extraction import extract
from speakdigits.formats import features, raw
from speakdigits.params import load_params
from stages.common import Stage, entry_point

DVC_STAGE = Stage(deps=(raw.DIR,), params=("mel",), outs=(features.DIR,))


@entry_point()
def main(args: argparse.Namespace) -> None:
    params = load_params()
    report = extract(raw.DIR, features.DIR, params.mel)
    print(
        f"extract: {report['clips_used']} of {report['clips_found']} clips from {report['speakers']} speakers, "
        f"{len(report['skipped'])} skipped (see {features.DIR / features.REPORT_JSON}); "
        f"mel bands up to {report['fmax']:g} Hz"
    )
    for note in report["metadata_notes"]:
        print(f"extract: metadata: {note}")


if __name__ == "__main__":
    main()
