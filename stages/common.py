"""What every stage entry point shares: one-line errors and the params file."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from speakdigits.errors import PipelineError


def entry_point(main: Callable[[], None]) -> Callable[[], None]:
    """Run ``main``; a PipelineError becomes ``error: <message>`` on stderr and exit status 1."""

    @functools.wraps(main)
    def run() -> None:
        try:
            main()
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("error: interrupted; nothing was written", file=sys.stderr)
            sys.exit(130)

    return run
