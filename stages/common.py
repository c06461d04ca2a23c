"""What every stage entry point shares: its dvc.yaml entry, its command line, one-line errors."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speakdigits.errors import PipelineError

#: ``Stage.params`` of a stage that tracks every key of params.yaml, an unknown one included.
EVERY_PARAM = ("params.yaml:",)


@dataclass(frozen=True)
class Stage:
    """A stage's entry in dvc.yaml, declared beside the code that runs it.

    ``python -m stages.dvc_yaml`` writes dvc.yaml from these declarations and
    from each stage's import closure (its code dependencies), so every path is
    written once, here and in :mod:`speakdigits.formats`, and no list of code
    is kept by hand.

    Parameters
    ----------
    deps : tuple of Path
        The data it reads (other stages' outputs).
    params : tuple of str
        The params.yaml keys it reads (:data:`EVERY_PARAM`: the whole file).
    outs : tuple of Path
        What it writes, kept in DVC's cache.
    metrics : tuple of Path
        What it writes for ``dvc metrics``/``dvc plots``, kept in git (``cache: false``).
    checked_params : bool
        Whether it depends on the check_params stage's output, so that a bad
        params.yaml stops the run before DVC removes this stage's outputs.
    note : str
        A comment above its entry in dvc.yaml.
    """

    deps: tuple[Path, ...] = ()
    params: tuple[str, ...] = ()
    outs: tuple[Path, ...] = ()
    metrics: tuple[Path, ...] = ()
    checked_params: bool = True
    note: str = ""


#: TensorFlow's threads, inside one op (a matmul, a convolution) and across ops: fixed at one, so
#: that results do not depend on the number of cores or on how busy they are (measured on the default
#: run: training takes about 30 % longer than with two threads inside each op).
TF_OP_THREADS = 1


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

        # One thread inside each op, whatever the cores: how an op splits its sums over threads changes
        # their rounding, so the model's bytes followed the core count (SPEAKDIGITS_CORES=1 trained
        # another model). And one op at a time: with independent ops side by side on two threads, a busy
        # machine now and then trained other bytes (the tests' tiny model, 1 run in 7 beside another
        # training; 0 in 16 one op at a time).
        tf.config.threading.set_intra_op_parallelism_threads(TF_OP_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(TF_OP_THREADS)
        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")


def entry_point(
    *, tensorflow: bool = False, arguments: Callable[[argparse.ArgumentParser], None] | None = None
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
            parser = argparse.ArgumentParser(
                prog=f"python -m {spec.name if spec else main.__module__}",
                description=module.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
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
