"""Read and validate ``params.yaml``, into typed, frozen sections.

Every stage calls :func:`load_params` before any heavy work, so that a typo in
a key, a wrong type or an out-of-range value stops the stage at once with one
line naming the key, the value and what is allowed. What comes out is a
:class:`Params`: one frozen dataclass per section (:class:`MelParams`, ...),
each field declaring the :class:`Rule` its key follows, so the types and the
checks are written once.

Why not pydantic (installed with DVC): its models would declare the same
types and bounds, but its lax mode turns ``"yes"`` or ``1`` into ``True``
(strict mode then refuses ``1`` for a float), its messages run over several
lines and have to be rewritten into ours anyway, and the checks between keys
(the ``seed`` network's 50 x 50, mel bands above the recordings' band) stay
hand-written either way. The :class:`Rule` table is short, and it would make
pydantic a direct dependency pinned to whatever DVC needs.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
            text = {
                "int": "an integer",
                "float": "a number",
                "bool": "true or false",
                "str": "a string",
                "int_list": "a non-empty list of integers",
            }[self.kind]
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
            return (
                isinstance(value, list)
                and len(value) > 0
                and all(Rule("int", self.low, self.high).accepts(v) for v in value)
            )
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


def key(
    kind: str,
    low: float | None = None,
    high: float | None = None,
    *,
    choices: tuple[str, ...] = (),
    nullable: bool = False,
    open_choice: bool = False,
) -> Any:
    """A params field and the :class:`Rule` its params.yaml key follows (kept in the field's metadata)."""
    return field(metadata={"rule": Rule(kind, low, high, choices, nullable, open_choice)})


# params.yaml, section by section. README.md ("Parameters") documents each key. Library functions take
# the sections they read (``mel: MelParams``), never the whole file nor loose keys of a section.


@dataclass(frozen=True)
class SyntheticParams:
    """``data.synthetic``: the offline eSpeak NG data set."""

    speakers: int = key("int", 3, 1000)
    takes: int = key("int", 1, 500)
    noise_db: float = key("float", -120, 0)
    seed: int = key("int", 0, 2**31 - 1)


@dataclass(frozen=True)
class DataParams:
    """``data``: where the recordings come from."""

    source: str = key("str", choices=DATA_SOURCES, open_choice=True)
    sha256: str | None = key("str", nullable=True)
    synthetic: SyntheticParams = field()


@dataclass(frozen=True)
class MelParams:
    """``mel``: how a clip becomes a log-mel image (and, inverted, a clip again)."""

    sample_rate: int = key("int", 4000, 96000)
    duration: float = key("float", 0.1, 10)
    n_mels: int = key("int", 8, 256)
    frames: int = key("int", 8, 1024)
    n_fft: int = key("int", 64, 8192)
    fmin: float = key("float", 0, 48000)
    fmax: float | None = key("float", 1, 48000, nullable=True)
    trim_db: float | None = key("float", 1, 120, nullable=True)
    top_db: float = key("float", 10, 200)

    # Derived once, here (as whisper's audio.py does), so that no two places compute them differently.
    @property
    def n_samples(self) -> int:
        """Samples of a prepared clip: ``duration`` at ``sample_rate``."""
        return round(self.duration * self.sample_rate)

    @property
    def hop(self) -> int:
        """Frame hop that gives exactly ``frames`` centred frames over a clip: with centred frames there
        are ``1 + n_samples // hop`` of them, at least ``frames``, and the first ``frames`` are kept."""
        return max(1, self.n_samples // (self.frames - 1))


@dataclass(frozen=True)
class SplitParams:
    """``split``: the speakers held out."""

    val_fraction: float = key("float", 0, 0.5)
    test_fraction: float = key("float", 0, 0.5)


@dataclass(frozen=True)
class VaeParams:
    """``vae``: the network."""

    arch: str = key("str", choices=("conv", "seed"))
    conditional: bool = key("bool")
    filters: tuple[int, ...] = key("int_list", 1, 1024)
    dense: int = key("int", 1, 8192)


@dataclass(frozen=True)
class TrainParams:
    """``train``: how the VAE is fitted."""

    epochs: int = key("int", 1, 10000)
    batch_size: int = key("int", 1, 65536)
    learning_rate: float = key("float", 1e-7, 10)
    warmup_epochs: float = key("float", 0, 10000)
    reconstruction_weight: float = key("float", 0.001, 1e7)
    pitch_weight: float = key("float", 0, 100)
    digit_adversary: float = key("float", 0, 1000)
    patience: int = key("int", 1, 10000)


@dataclass(frozen=True)
class GenerateParams:
    """``generate``: new voices."""

    per_digit: int = key("int", 1, 1000)
    n_samples: int = key("int", 1, 10000)
    sampling: str = key("str", choices=("fitted", "prior"))
    temperature: float = key("float", 0, 10)
    contrast: float = key("float", 0, 3)
    voice_detail: float = key("float", 0, 2)
    latent_voice: float = key("float", 0, 1)
    vocoder: str = key("str", choices=("harmonic", "griffin_lim"))
    harmonic_iters: int = key("int", 1, 1000)
    aperiodicity: float = key("float", 0, 1)
    griffin_lim_iters: int = key("int", 1, 1000)
    griffin_lim_momentum: float = key("float", 0, 1.5)

    @property
    def vocoder_iters(self) -> int:
        """Rounds of the chosen vocoder's loop."""
        return self.harmonic_iters if self.vocoder == "harmonic" else self.griffin_lim_iters


@dataclass(frozen=True)
class ClassifyParams:
    """``classify``: the judges."""

    epochs: int = key("int", 1, 10000)
    batch_size: int = key("int", 1, 65536)
    learning_rate: float = key("float", 1e-7, 10)
    patience: int = key("int", 1, 10000)
    holdout_takes: float = key("float", 0.01, 0.3)


@dataclass(frozen=True)
class EvaluateParams:
    """``evaluate``: the judging of the voices."""

    reference_clips: int = key("int", 1, 10000)
    voice_clips: int = key("int", 0, 10000)
    voice_takes: int = key("int", 0, 100)
    trusted_judge_accuracy: float = key("float", 0, 1)


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml, validated (:func:`load_params`)."""

    seed: int = key("int", 0, 2**31 - 1)
    latent_dim: int = key("int", 1, 512)
    data: DataParams = field()
    mel: MelParams = field()
    split: SplitParams = field()
    vae: VaeParams = field()
    train: TrainParams = field()
    generate: GenerateParams = field()
    classify: ClassifyParams = field()
    evaluate: EvaluateParams = field()


def _section_types(cls: type) -> dict[str, type]:
    return {name: hint for name, hint in typing.get_type_hints(cls).items() if dataclasses.is_dataclass(hint)}


def schema_of(cls: type) -> dict[str, Any]:
    """The keys of a params section and their :class:`Rule` (a nested dict for a nested section)."""
    sections = _section_types(cls)
    return {
        f.name: schema_of(sections[f.name]) if f.name in sections else f.metadata["rule"]
        for f in dataclasses.fields(cls)
    }


def from_mapping(cls: type, values: dict[str, Any]) -> Any:
    """A params section built from its validated mapping (lists become tuples: the sections are frozen)."""
    sections = _section_types(cls)
    return cls(
        **{
            name: from_mapping(sections[name], value)
            if name in sections
            else tuple(value)
            if isinstance(value, list)
            else value
            for name, value in values.items()
        }
    )


#: The schema of params.yaml: nested dicts of Rules, read from the dataclasses above.
SCHEMA: dict[str, Any] = schema_of(Params)


def shown(value: Any, most: int = 80) -> str:
    """``repr(value)``, cut to ``most`` characters: an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= most else text[: most - 1] + "…"


def validate(params: Any, schema: dict[str, Any] = SCHEMA, prefix: str = "") -> None:
    """Check a parsed params mapping against ``schema``.

    Raises
    ------
    PipelineError
        On the first unknown key, missing key, or value the schema rejects.
    """
    where = prefix.rstrip(".") or "params.yaml"
    if not isinstance(params, dict):
        raise PipelineError(f"params.yaml: {where} must be a mapping of keys, got {shown(params)}")
    for key in params:
        if key not in schema:
            known = ", ".join(prefix + k for k in schema)
            raise PipelineError(f"params.yaml: unknown key {shown(prefix + str(key))} (known keys here: {known})")
    for key, rule in schema.items():
        name = prefix + key
        if key not in params:
            raise PipelineError(f"params.yaml: missing key '{name}'")
        value = params[key]
        if isinstance(rule, dict):
            validate(value, rule, name + ".")
        elif not rule.accepts(value):
            raise PipelineError(f"params.yaml: {name} = {shown(value)} is not allowed; expected {rule.describe()}")
        elif rule.kind == "float" and isinstance(value, int):
            # `-S train.learning_rate=1` arrives as an int; code downstream (Keras) wants floats.
            params[key] = float(value)


# Slaney's mel scale (his Auditory Toolbox's, librosa's default): linear below 1 kHz, logarithmic above. Both
# directions are librosa's operation for operation, so that :func:`speakdigits.audio.mel_filters` is its bytes.
_MEL_LINEAR_HZ = 200.0 / 3  # Hz per mel below the break
_MEL_BREAK_HZ = 1000.0
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_LINEAR_HZ
_MEL_LOG_STEP = np.log(6.4) / 27.0  # log(Hz) per mel above the break


def hz_to_mel(hz) -> np.ndarray:
    """Each frequency of ``hz`` (Hz; a number or an array) on Slaney's mel scale."""
    hz = np.asanyarray(hz, dtype=np.float64)
    mels = hz / _MEL_LINEAR_HZ
    if hz.ndim:
        above = hz >= _MEL_BREAK_HZ
        mels[above] = _MEL_BREAK + np.log(hz[above] / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    elif hz >= _MEL_BREAK_HZ:
        mels = _MEL_BREAK + np.log(hz / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return mels


def mel_to_hz(mels) -> np.ndarray:
    """The frequency (Hz) at each of ``mels`` on :func:`hz_to_mel`'s scale."""
    shape = np.shape(mels)
    mels = np.array(mels, dtype=np.float64, ndmin=1)
    freqs = _MEL_LINEAR_HZ * mels
    above = mels >= _MEL_BREAK
    freqs[above] = _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (mels[above] - _MEL_BREAK))
    return freqs.reshape(shape)


def mel_band_centres(*, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Each mel band's centre, in mel (:func:`hz_to_mel`): band ``i`` spans the ``i``-th to the ``i + 2``-th
    of ``n_mels + 2`` points evenly spaced in mel from ``fmin`` to ``fmax``, as
    :func:`speakdigits.audio.mel_filters` builds them."""
    return np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)[1:-1]


def empty_mel_bands(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> list[int]:
    """The mel bands (0-based) whose triangle holds no FFT bin: an image row that is always silent.

    Slaney's mel scale, as :func:`speakdigits.audio.mel_filters` builds it (band ``i`` spans the
    ``i``-th to the ``i + 2``-th of ``n_mels + 2`` points evenly spaced in mel); librosa only warns.
    """
    points = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    bins = hz_to_mel(np.fft.rfftfreq(n_fft, 1 / sample_rate))
    return [i for i in range(n_mels) if not np.any((bins > points[i]) & (bins < points[i + 2]))]


def check_consistency(params: dict[str, Any]) -> None:
    """Checks that involve several keys at once: every value a stage would refuse is refused here,
    before DVC removes any stage's outputs (``check_params``)."""
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
    empty = empty_mel_bands(
        sample_rate=mel["sample_rate"], n_fft=mel["n_fft"], n_mels=mel["n_mels"], fmin=mel["fmin"], fmax=fmax
    )
    if empty:
        raise PipelineError(
            f"params.yaml: mel.n_mels = {mel['n_mels']} is too many for mel.n_fft = {mel['n_fft']} between "
            f"{mel['fmin']:g} and {fmax:g} Hz: band {empty[0]} (of {len(empty)} empty) holds no FFT bin; "
            "expected fewer bands or a larger n_fft"
        )
    vae = params["vae"]
    if vae["arch"] == "seed" and (mel["n_mels"], mel["frames"]) != (50, 50):
        raise PipelineError(
            f"params.yaml: vae.arch = 'seed' is the original 50 x 50 network, but mel.n_mels x mel.frames is "
            f"{mel['n_mels']} x {mel['frames']}; set mel.n_mels=50 and mel.frames=50, or vae.arch=conv"
        )
    split = params["split"]
    if split["test_fraction"] == 0:
        raise PipelineError(
            "params.yaml: split.test_fraction = 0 leaves no test speakers, whom the test metrics and the "
            "real-speech references need; expected above 0"
        )
    if split["val_fraction"] + split["test_fraction"] >= 0.9:
        raise PipelineError(
            "params.yaml: split.val_fraction + split.test_fraction = "
            f"{split['val_fraction'] + split['test_fraction']:g} leaves too few training speakers; expected below 0.9"
        )


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load ``params.yaml``, validate every key, and return it as typed, frozen sections.

    Parameters
    ----------
    path : str or Path
        The params file.

    Returns
    -------
    Params
        The parameters.

    Raises
    ------
    PipelineError
        When the file is missing, not YAML, or any value is invalid.
    """
    params = read_yaml(Path(path))
    validate(params)
    check_consistency(params)
    return from_mapping(Params, params)


#: A params file is a page of settings; a larger one is refused before YAML reads it.
MOST_PARAMS_BYTES = 1 << 20


def read_yaml(path: Path) -> Any:
    """``path`` read as DVC reads it: YAML 1.2 through ruamel.yaml's safe loader.

    PyYAML reads YAML 1.1, where ``052`` is octal 42 and ``on`` is true; DVC
    (``dvc params diff``, ``dvc exp show``) reads them as 52 and the string
    ``'on'``. The pipeline reads what DVC shows. Aliases (``*name``) are
    refused: a few of them nest into an exponentially large value.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        size = path.stat().st_size
        if size > MOST_PARAMS_BYTES:
            raise PipelineError(f"{path}: {size} bytes; expected a params file of at most {MOST_PARAMS_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found; expected the pipeline's params file") from None
    except UnicodeDecodeError as err:
        raise PipelineError(f"{path}: byte {err.start} is not UTF-8; expected a UTF-8 text file") from None
    try:
        params = YAML(typ="safe").load(text)
    except YAMLError as err:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "invalid YAML")
        raise PipelineError(f"{path}: not valid YAML ({first[:200]})") from None
    _refuse_aliases(params, path)
    return params


def _refuse_aliases(value: Any, path: Path) -> None:
    """Refuse a value that holds the same list or mapping twice: what a YAML alias makes."""
    seen: set[int] = set()
    todo = [value]
    while todo:
        node = todo.pop()
        if isinstance(node, (dict, list)):
            if id(node) in seen:
                raise PipelineError(f"{path}: uses a YAML alias (*name); expected every value written out")
            seen.add(id(node))
            todo.extend(node.values() if isinstance(node, dict) else node)
