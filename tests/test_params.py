"""Tests for speakdigits.params: load_params on real params files written to a
temporary folder, and a real stage entry point refusing a bad params.yaml.

Every rejection must be a PipelineError whose message is one line naming the
key (or file), the offending value and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from speakdigits.errors import PipelineError
from speakdigits.params import SCHEMA, MelParams, Params, Rule, load_params

from conftest import BASE, REPO, rejection, tool_env, with_value, without, write_params

# ----------------------------------------------------------------- accepted


def test_repo_params_yaml_validates():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params) and isinstance(params.mel, MelParams)
    as_dict = dataclasses.asdict(params)
    as_dict["vae"]["filters"] = list(as_dict["vae"]["filters"])
    assert as_dict == BASE


def test_params_are_typed_and_frozen():
    params = load_params(REPO / "params.yaml")
    assert params.mel.sample_rate == BASE["mel"]["sample_rate"]
    assert params.data.synthetic.speakers == BASE["data"]["synthetic"]["speakers"]
    assert params.vae.filters == tuple(BASE["vae"]["filters"])  # a tuple: nothing in a section can change
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.mel.n_mels = 8  # type: ignore[misc]


def test_the_schema_is_read_from_the_sections():
    """Every key of params.yaml has a field with its rule, and every field is a key: one list, not two."""

    def keys(node, prefix=""):
        out = set()
        for key, value in node.items():
            out |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return out

    assert keys(SCHEMA) == keys(BASE)
    assert SCHEMA["mel"]["n_mels"] == Rule("int", 8, 256)


def test_valid_edge_values_are_accepted(tmp_path):
    params = with_value("mel.fmax", 8000)  # exactly Nyquist of 16000 Hz
    params["mel"]["duration"] = 1  # an integer where a number is expected
    params["mel"]["trim_db"] = None
    params["data"]["source"] = "some/local/folder"  # open choice: a path
    params["split"]["val_fraction"] = 0.0
    loaded = load_params(write_params(tmp_path, params))
    assert loaded.mel.fmax == 8000
    assert loaded.mel.duration == 1.0 and isinstance(loaded.mel.duration, float)
    assert loaded.mel.trim_db is None
    assert loaded.data.source == "some/local/folder"


# ----------------------------------------------------------------- unknown and missing keys


def test_unknown_top_level_key_is_named(tmp_path):
    params = copy.deepcopy(BASE)
    params["seeed"] = 3
    message = rejection(tmp_path, params)
    assert "unknown key 'seeed'" in message


def test_unknown_nested_key_is_named_with_its_path(tmp_path):
    params = copy.deepcopy(BASE)
    params["mel"]["n_mel"] = 64
    message = rejection(tmp_path, params)
    assert "unknown key 'mel.n_mel'" in message
    assert "mel.n_mels" in message  # lists the known keys of that section


def test_unknown_deeply_nested_key(tmp_path):
    params = copy.deepcopy(BASE)
    params["data"]["synthetic"]["speakerz"] = 5
    assert "unknown key 'data.synthetic.speakerz'" in rejection(tmp_path, params)


@pytest.mark.parametrize("dotted", ["mel.top_db", "split", "data.synthetic.takes", "seed"])
def test_missing_key_is_named(tmp_path, dotted):
    message = rejection(tmp_path, without(dotted))
    assert f"missing key '{dotted}'" in message


def test_section_that_is_not_a_mapping(tmp_path):
    message = rejection(tmp_path, with_value("mel", 5))
    assert "mel must be a mapping" in message
    assert "5" in message


# ----------------------------------------------------------------- wrong type


@pytest.mark.parametrize(
    ("dotted", "value", "shown", "allowed"),
    [
        ("mel.n_mels", "64", "'64'", "an integer"),
        ("seed", 1.5, "1.5", "an integer"),
        ("mel.n_mels", True, "True", "an integer"),
        ("data.synthetic.speakers", False, "False", "an integer"),
        ("mel.duration", "1.0", "'1.0'", "a number"),
        ("mel.top_db", True, "True", "a number"),
        ("mel.sample_rate", None, "None", "an integer"),
        ("data.source", 7, "7", "'synthetic'"),
        ("data.source", "", "''", "'synthetic'"),
    ],
)
def test_wrong_type_names_key_value_and_what_is_allowed(tmp_path, dotted, value, shown, allowed):
    message = rejection(tmp_path, with_value(dotted, value))
    assert f"{dotted} = {shown} is not allowed" in message
    assert f"expected {allowed}" in message


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_rejected(tmp_path, value):
    message = rejection(tmp_path, with_value("mel.duration", value))
    assert "mel.duration" in message
    assert "a number in [0.1, 10]" in message


# ----------------------------------------------------------------- out of range


@pytest.mark.parametrize(
    ("dotted", "value", "allowed"),
    [
        ("data.synthetic.speakers", 1, "an integer in [3, 1000]"),
        ("split.test_fraction", 0.9, "a number in [0, 0.5]"),
        ("split.val_fraction", -0.1, "a number in [0, 0.5]"),
        ("mel.n_mels", 4, "an integer in [8, 256]"),
        ("seed", -1, "an integer in [0, "),
        ("data.synthetic.noise_db", 3.0, "a number in [-120, 0]"),
    ],
)
def test_out_of_range_names_key_value_and_range(tmp_path, dotted, value, allowed):
    message = rejection(tmp_path, with_value(dotted, value))
    assert f"{dotted} = {value!r} is not allowed" in message
    assert f"expected {allowed}" in message


# ----------------------------------------------------------------- several keys together


def test_fmax_above_nyquist(tmp_path):
    params = with_value("mel.fmax", 12000)
    params["mel"]["sample_rate"] = 22050
    message = rejection(tmp_path, params)
    assert "mel.fmax = 12000" in message
    assert "Nyquist" in message
    assert "11025" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # Each passed check_params once, and the stage refused it only after DVC had removed its outputs.
        (
            {"vae.arch": "seed"},
            "vae.arch = 'seed' is the original 50 x 50 network, but mel.n_mels x mel.frames is 64 x 64",
        ),
        ({"split.test_fraction": 0.0, "split.val_fraction": 0.0}, "split.test_fraction = 0 leaves no test speakers"),
        (
            {"mel.n_mels": 256, "mel.n_fft": 512},
            "mel.n_mels = 256 is too many for mel.n_fft = 512 between 0 and 8000 Hz",
        ),
    ],
)
def test_values_a_stage_would_refuse_are_refused_with_the_params(tmp_path, changes, expected):
    params = copy.deepcopy(BASE)
    params["mel"].update(n_mels=64, frames=64)
    for dotted, value in changes.items():
        section, name = dotted.split(".")
        params[section][name] = value
    message = rejection(tmp_path, params)
    assert message.startswith(f"params.yaml: {expected}"), message


def test_the_seed_network_at_its_own_shape_is_accepted(tmp_path):
    params = with_value("vae.arch", "seed")
    params["mel"].update(n_mels=50, frames=50)
    assert load_params(write_params(tmp_path, params)).vae.arch == "seed"


def test_fmin_not_below_fmax(tmp_path):
    params = with_value("mel.fmin", 5000)
    params["mel"]["fmax"] = 4000
    message = rejection(tmp_path, params)
    assert "mel.fmin = 5000" in message and "4000" in message


def test_too_many_frames_for_the_duration(tmp_path):
    params = with_value("mel.frames", 1000)
    params["mel"]["duration"] = 0.1
    params["mel"]["sample_rate"] = 8000
    message = rejection(tmp_path, params)
    assert "mel.frames = 1000" in message
    assert "at most 400" in message


def test_split_fractions_leaving_too_few_training_speakers(tmp_path):
    params = with_value("split.val_fraction", 0.45)
    params["split"]["test_fraction"] = 0.5
    message = rejection(tmp_path, params)
    assert "split.val_fraction + split.test_fraction = 0.95" in message


# ----------------------------------------------------------------- the file itself


def test_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("mel: [unclosed\n  n_mels: 64\n", encoding="utf-8")
    with pytest.raises(PipelineError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "not valid YAML" in message


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(PipelineError, match="must be a mapping"):
        load_params(path)


def test_empty_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(PipelineError, match="must be a mapping of keys, got None"):
        load_params(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "params.yaml"
    with pytest.raises(PipelineError) as info:
        load_params(path)
    assert str(path) in str(info.value)
    assert "file not found" in str(info.value)


# ----------------------------------------------------------------- a real stage


def test_stage_stops_at_once_on_bad_params(repo_copy):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text(encoding="utf-8"))
    params["mel"]["n_mels"] = "64"
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")

    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stages.extract"],
        cwd=repo_copy,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - start

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    assert lines[0].startswith("error: ")
    assert "mel.n_mels = '64'" in lines[0]
    assert "an integer" in lines[0]
    assert elapsed < 10, f"took {elapsed:.1f} s to reject params.yaml"
    assert not (repo_copy / "data" / "features").exists()
    assert not list((repo_copy / "data").glob(".features.*"))


def test_stage_that_cannot_write_its_output_says_so_in_one_line(repo_copy):
    """An OSError (here data/ is a file, so data/raw cannot be made; a read-only or full disk alike)."""
    params = yaml.safe_load((repo_copy / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["synthetic"].update(speakers=3, takes=1)
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (repo_copy / "data").write_text("a user's file where the data folder would go\n")
    result = subprocess.run(
        [sys.executable, "-m", "stages.download"],
        cwd=repo_copy,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.replace("\r", "\n").splitlines()  # a progress bar may precede it on its line
    errors = [line[line.find("error:") :] for line in lines if "error:" in line or "Traceback" in line]
    assert errors == ["error: data: File exists; nothing was written"], result.stderr
    assert (repo_copy / "data").read_text() == "a user's file where the data folder would go\n"


# ----------------------------------------------------------------- read as DVC reads it


def params_text(tmp_path: Path, replace: tuple[str, str] = ("", ""), *, extra: str = "") -> Path:
    """The repository's params.yaml with one text substitution (and text appended), written beside the test."""
    text = (REPO / "params.yaml").read_text(encoding="utf-8")
    old, new = replace
    assert old in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new, 1) + extra, encoding="utf-8")
    return path


def test_values_are_read_as_dvc_reads_them_yaml_1_2(tmp_path):
    # PyYAML (YAML 1.1) read 052 as octal 42 and 1e-3 as a string, while `dvc params diff` showed 52 and 0.001.
    loaded = load_params(params_text(tmp_path, ("seed: 42", "seed: 052")))
    assert loaded.seed == 52
    loaded = load_params(params_text(tmp_path, ("learning_rate: 0.001", "learning_rate: 1e-3")))
    assert loaded.train.learning_rate == 0.001


def test_on_is_a_string_as_dvc_shows_it_so_it_is_refused_for_a_boolean(tmp_path):
    with pytest.raises(PipelineError, match=r"^params.yaml: vae.conditional = 'on' is not allowed; expected true"):
        load_params(params_text(tmp_path, ("conditional: true", "conditional: on")))


def one_line_error(path: Path) -> str:
    with pytest.raises(PipelineError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message[:500]
    return message


def test_a_byte_that_is_not_utf8_is_named_in_one_line(tmp_path):
    path = params_text(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"seed: 42", b"seed: 4\xff2"))
    assert " is not UTF-8; expected a UTF-8 text file" in one_line_error(path)


def test_an_alias_bomb_is_refused_at_once_in_one_line(tmp_path):
    bomb = 'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n'
    for i in range(12):  # each level three times the last: 9 x 3**12 strings if expanded
        this, last = chr(98 + i), chr(97 + i)
        bomb += f"{this}: &{this} [*{last}, *{last}, *{last}]\n"
    path = params_text(tmp_path, extra=f"extra:\n{''.join('  ' + line for line in bomb.splitlines(True))}")
    assert "uses a YAML alias (*name)" in one_line_error(path)


def test_a_huge_file_or_value_gets_a_short_answer(tmp_path):
    path = params_text(tmp_path, extra="# " + "x" * (2 << 20) + "\n")
    assert "bytes; expected a params file of at most 1048576 bytes" in one_line_error(path)
    path = params_text(tmp_path, ("vocoder: harmonic", "vocoder: " + "y" * 100_000))
    assert "generate.vocoder = 'yyyy" in one_line_error(path)


def test_each_vocoder_runs_its_own_number_of_rounds(tmp_path):
    # The harmonic vocoder blurs the voice with many rounds, Griffin-Lim needs them: one shared count served neither.
    params = with_value("generate.harmonic_iters", 8)
    params["generate"]["griffin_lim_iters"] = 32
    assert load_params(write_params(tmp_path, params)).generate.vocoder_iters == 8
    params["generate"]["vocoder"] = "griffin_lim"
    assert load_params(write_params(tmp_path, params)).generate.vocoder_iters == 32
