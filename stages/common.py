"""What every stage entry point shares: one-line errors and the params file."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable

from speakdigits.errors import PipelineError

# Where each stage reads and writes, relative to the repository root; dvc.yaml
# declares the same paths as deps and outs.
PARAMS_CHECKED = Path("data/params_checked.txt")  # every other stage depends on it: see stages/check_params.py
RAW_DIR = Path("data/raw")
DOWNLOAD_CACHE_DIR = Path(".cache/downloads")  # not a DVC output: kept so downloads resume
FEATURES_DIR = Path("data/features")
NORMALIZED_DIR = Path("data/normalized")
MODEL_DIR = Path("data/model")
GENERATED_DIR = Path("data/generated")
CLASSIFIERS_DIR = Path("data/classifiers")
LISTEN_DIR = Path("data/listen")


def entry_point(main: Callable[[], None]) -> Callable[[], None]:
    """Run ``main``; a PipelineError becomes ``error: <message>`` on stderr and exit status 1."""

    @functools.wraps(main)
    def run() -> None:
        try:
            main()
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except OSError as err:  # a read-only or full disk, a folder where a file should be: name it, no traceback
            where = f"{err.filename}: " if err.filename else ""
            print(f"error: {where}{err.strerror or err}; nothing was written", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("error: interrupted; nothing was written", file=sys.stderr)
            sys.exit(130)

    return run
