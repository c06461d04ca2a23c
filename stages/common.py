"""What every stage entry point shares: its command line, one-line errors, the paths."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import Callable

from speakdigits.cores import available_cores
from speakdigits.errors import PipelineError

# Where each stage reads and writes, relative to the repository root; dvc.yaml
# declares the same paths as deps and outs.
PARAMS_CHECKED = Path("data/params_checked.txt")  # every other stage depends on it: see stages/check_params.py
RAW_DIR = Path("data/raw")
FEATURES_DIR = Path("data/features")
NORMALIZED_DIR = Path("data/normalized")
MODEL_DIR = Path("data/model")
GENERATED_DIR = Path("data/generated")
CLASSIFIERS_DIR = Path("data/classifiers")
LISTEN_DIR = Path("data/listen")
PLOTS_TEMPLATE = Path("data/plots_template.html")  # .dvc/config's plots.html_template


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their log noise silenced.

    TensorFlow's C++ side prints lines that look like errors and hide the
    stage's own output: ``E0000 ... failed call to cuInit`` (no GPU) and
    ``NodeDef mentions attribute use_unbounded_threadpool`` (TensorFlow 2.21's
    Python and C++ halves disagree on one op; harmless), each at C++ "error"
    level, and at import, before its log settings apply, absl's notice about
    its own start. So: stderr is pointed at /dev/null while TensorFlow loads,
    ``TF_CPP_MIN_LOG_LEVEL`` is 3 (C++ logs below fatal hidden; a real failure
    still raises a Python exception, which the stage reports), and
    TensorFlow's Python logger shows errors only (not its notes on retracing).
    Set ``TF_CPP_MIN_LOG_LEVEL=0`` in the environment to see everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
        import tensorflow as tf

        # Its thread pools sized to the cores this process is given (affinity, $SPEAKDIGITS_CORES),
        # not the machine's count.
        tf.config.threading.set_intra_op_parallelism_threads(available_cores())
        tf.config.threading.set_inter_op_parallelism_threads(available_cores())
        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")


def entry_point(*, tensorflow: bool = False,
                arguments: Callable[[argparse.ArgumentParser], None] | None = None
                ) -> Callable[[Callable[[argparse.Namespace], None]], Callable[..., None]]:
    """Make ``main(args)`` a stage's command.

    The command line is parsed first, so ``--help`` answers at once, naming
    the command the user types (``python -m stages.train``) and showing the
    module's docstring; ``arguments`` adds a stage's own options. A stage that
    uses TensorFlow (``tensorflow=True``) imports its library code inside
    ``main``, after :func:`import_tensorflow_quietly`. A PipelineError or
    OSError becomes ``error: <message>`` on stderr and exit status 1.
    """

    def wrap(main: Callable[[argparse.Namespace], None]) -> Callable[..., None]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> None:
            module = sys.modules[main.__module__]
            spec = getattr(module, "__spec__", None)
            parser = argparse.ArgumentParser(prog=f"python -m {spec.name if spec else main.__module__}",
                                             description=module.__doc__,
                                             formatter_class=argparse.RawDescriptionHelpFormatter)
            if arguments is not None:
                arguments(parser)
            args = parser.parse_args(argv)
            try:
                if tensorflow:
                    import_tensorflow_quietly()
                main(args)
            except PipelineError as err:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(1)
            except OSError as err:  # a read-only or full disk, a folder where a file should be: name it
                where = f"{err.filename}: " if err.filename else ""
                print(f"error: {where}{err.strerror or err}; nothing was written", file=sys.stderr)
                sys.exit(1)
            except KeyboardInterrupt:
                print("error: interrupted; nothing was written", file=sys.stderr)
                sys.exit(130)

        return run

    return wrap
