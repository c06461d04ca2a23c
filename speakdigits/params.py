"""Read and validate ``params.yaml``.

Every stage calls :func:`load_params` before any heavy work, so that a typo in
a key, a wrong type or an out-of-range value stops the stage at once with one
line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from speakdigits.errors import PipelineError

DATA_SOURCES = ("synthetic", "audiomnist", "fsdd")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Rule:
    """What one params.yaml key accepts.

    Parameters
    ----------
    kind : {'int', 'float', 'bool', 'str', 'int_list'}
        The value's type. ``float`` also accepts integers; ``int_list`` is a
        non-empty list of integers, each within the bounds.
    low, high : float, optional
        Inclusive bounds for numbers.
    choices : tuple of str, optional
        Allowed strings.
    nullable : bool
        Whether ``null`` is allowed.
    open_choice : bool
        Whether strings outside ``choices`` are also allowed (for
        ``data.source``, which also takes a local path).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False
    open_choice: bool = False

    def describe(self) -> str:
        if self.choices:
            allowed = " or ".join(repr(c) for c in self.choices)
            if self.open_choice:
                allowed += " or a local path"
            text = allowed
        else:
            text = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                    "int_list": "a non-empty list of integers"}[self.kind]
            if self.kind == "int_list":
                text += ", each"
            if self.low is not None and self.high is not None:
                text += f" in [{_number(self.low)}, {_number(self.high)}]"
            elif self.low is not None:
                text += f" >= {_number(self.low)}"
            elif self.high is not None:
                text += f" <= {_number(self.high)}"
        if self.nullable:
            text += " or null"
        return text

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int_list":
            return isinstance(value, list) and len(value) > 0 and all(
                Rule("int", self.low, self.high).accepts(v) for v in value)
        if self.kind == "str":
            return isinstance(value, str) and (
                not self.choices or value in self.choices or (self.open_choice and value != "")
            )
        if isinstance(value, bool):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if self.kind == "float" and not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and value < self.low:
            return False
        if self.high is not None and value > self.high:
            return False
        return True


# The schema of params.yaml: nested dicts of Rules. README.md documents each key.
SCHEMA: dict[str, Any] = {
    "seed": Rule("int", 0, 2**31 - 1),
    "latent_dim": Rule("int", 1, 512),
    "data": {
        "source": Rule("str", choices=DATA_SOURCES, open_choice=True),
        "sha256": Rule("str", nullable=True),
        "synthetic": {
            "speakers": Rule("int", 3, 1000),
            "takes": Rule("int", 1, 500),
            "noise_db": Rule("float", -120, 0),
            "seed": Rule("int", 0, 2**31 - 1),
        },
    },
    "mel": {
        "sample_rate": Rule("int", 4000, 96000),
        "duration": Rule("float", 0.1, 10),
        "n_mels": Rule("int", 8, 256),
        "frames": Rule("int", 8, 1024),
        "n_fft": Rule("int", 64, 8192),
        "fmin": Rule("float", 0, 48000),
        "fmax": Rule("float", 1, 48000, nullable=True),
        "trim_db": Rule("float", 1, 120, nullable=True),
        "top_db": Rule("float", 10, 200),
    },
    "split": {
        "val_fraction": Rule("float", 0, 0.5),
        "test_fraction": Rule("float", 0, 0.5),
    },
    "vae": {
        "arch": Rule("str", choices=("conv", "seed")),
        "conditional": Rule("bool"),
        "filters": Rule("int_list", 1, 1024),
        "dense": Rule("int", 1, 8192),
    },
    "train": {
        "epochs": Rule("int", 1, 10000),
        "batch_size": Rule("int", 1, 65536),
        "learning_rate": Rule("float", 1e-7, 10),
        "reconstruction_weight": Rule("float", 0.001, 1e7),
        "patience": Rule("int", 1, 10000),
    },
    "generate": {
        "per_digit": Rule("int", 1, 1000),
        "n_samples": Rule("int", 1, 10000),
        "sampling": Rule("str", choices=("fitted", "prior")),
        "temperature": Rule("float", 0, 10),
        "griffin_lim_iters": Rule("int", 1, 1000),
        "griffin_lim_momentum": Rule("float", 0, 1.5),
    },
    "classify": {
        "epochs": Rule("int", 1, 10000),
        "batch_size": Rule("int", 1, 65536),
        "learning_rate": Rule("float", 1e-7, 10),
        "patience": Rule("int", 1, 10000),
        "holdout_takes": Rule("float", 0.01, 0.3),
    },
    "evaluate": {
        "reference_clips": Rule("int", 1, 10000),
        "trusted_judge_accuracy": Rule("float", 0, 1),
    },
}


def validate(params: Any, schema: dict[str, Any] = SCHEMA, prefix: str = "") -> None:
    """Check a parsed params mapping against ``schema``.

    Raises
    ------
    PipelineError
        On the first unknown key, missing key, or value the schema rejects.
    """
    where = prefix.rstrip(".") or "params.yaml"
    if not isinstance(params, dict):
        raise PipelineError(f"params.yaml: {where} must be a mapping of keys, got {params!r}")
    for key in params:
        if key not in schema:
            known = ", ".join(prefix + k for k in schema)
            raise PipelineError(f"params.yaml: unknown key '{prefix}{key}' (known keys here: {known})")
    for key, rule in schema.items():
        name = prefix + key
        if key not in params:
            raise PipelineError(f"params.yaml: missing key '{name}'")
        value = params[key]
        if isinstance(rule, dict):
            validate(value, rule, name + ".")
        elif not rule.accepts(value):
            raise PipelineError(f"params.yaml: {name} = {value!r} is not allowed; expected {rule.describe()}")
        elif rule.kind == "float" and isinstance(value, int):
            # `-S train.learning_rate=1` arrives as an int; code downstream (Keras) wants floats.
            params[key] = float(value)


def check_consistency(params: dict[str, Any]) -> None:
    """Checks that involve several keys at once."""
    mel = params["mel"]
    nyquist = mel["sample_rate"] / 2
    fmax = mel["fmax"] if mel["fmax"] is not None else nyquist
    if fmax > nyquist:
        raise PipelineError(
            f"params.yaml: mel.fmax = {mel['fmax']!r} is above the Nyquist frequency "
            f"{nyquist:g} Hz of mel.sample_rate = {mel['sample_rate']}; expected at most {nyquist:g} or null"
        )
    if mel["fmin"] >= fmax:
        raise PipelineError(f"params.yaml: mel.fmin = {mel['fmin']!r} must be below mel.fmax ({fmax:g} Hz)")
    samples = round(mel["duration"] * mel["sample_rate"])
    if mel["frames"] > samples // 2:
        raise PipelineError(
            f"params.yaml: mel.frames = {mel['frames']} is too many for {mel['duration']} s at "
            f"{mel['sample_rate']} Hz; expected at most {samples // 2}"
        )
    split = params["split"]
    if split["val_fraction"] + split["test_fraction"] >= 0.9:
        raise PipelineError(
            "params.yaml: split.val_fraction + split.test_fraction = "
            f"{split['val_fraction'] + split['test_fraction']:g} leaves too few training speakers; expected below 0.9"
        )


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Load ``params.yaml`` and validate every key.

    Parameters
    ----------
    path : str or Path
        The params file.

    Returns
    -------
    dict
        The parsed parameters.

    Raises
    ------
    PipelineError
        When the file is missing, not YAML, or any value is invalid.
    """
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found; expected the pipeline's params file") from None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else "invalid YAML"
        raise PipelineError(f"{path}: not valid YAML ({first})") from None
    validate(params)
    check_consistency(params)
    return params
