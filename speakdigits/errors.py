"""The one exception type that stages turn into a one-line error message."""


class PipelineError(Exception):
    """Bad input or a failed step, explained in one line.

    The message names the file, key or value at fault and what was expected.
    Stage entry points print it as ``error: <message>`` and exit with status 1.
    """
