"""Who the speakers are: their metadata (``data/raw/speakers.json``, as found in the source), read tolerantly,
and their split into training, validation and test speakers. The extract stage labels every clip with the
metadata and the normalize stage splits the clips by speaker; the mfcc_judge stage's gender judge learns from
both, without depending on either stage's code."""

from __future__ import annotations

import re

from speakdigits.errors import PipelineError
from speakdigits.params import SplitParams
from speakdigits.streams import Stream, stream

# Ages outside this range are recording mistakes, not speakers.
PLAUSIBLE_AGES = (3, 110)
_GENDERS = {"female": "female", "f": "female", "woman": "female", "male": "male", "m": "male", "man": "male"}


def clean_speaker_metadata(metadata: dict, speakers: list[str]) -> tuple[dict[str, dict], list[str]]:
    """Read messy per-speaker metadata tolerantly.

    Parameters
    ----------
    metadata : dict
        ``{speaker: {"gender": ..., "age": ..., ...}}`` as found in the source:
        ages may be numbers or strings, some may be impossible, some speakers
        may be missing, keys may be ``'1'`` where clips say ``'01'``.
    speakers : list of str
        The speaker ids found in the clip names.

    Returns
    -------
    clean : dict
        ``{speaker: {"gender": 'female' | 'male' | 'unknown', "age": int or None}}``
        for every speaker in ``speakers``.
    notes : list of str
        One line per thing that was ignored or missing.
    """
    by_key = {str(key).strip().lower(): value for key, value in metadata.items()}
    clean, notes, missing = {}, [], []
    for speaker in speakers:
        entry = by_key.get(speaker.lower())
        if entry is None and speaker.isdigit():
            entry = next((v for k, v in by_key.items() if k.isdigit() and int(k) == int(speaker)), None)
        if not isinstance(entry, dict):
            missing.append(speaker)
            clean[speaker] = {"gender": "unknown", "age": None}
            continue
        gender_value = entry.get("gender")
        gender = _GENDERS.get(str(gender_value).strip().lower(), "unknown") if gender_value is not None else "unknown"
        if gender == "unknown" and gender_value is not None:
            notes.append(f"speaker {speaker}: gender {gender_value!r} not understood, taken as unknown")
        age_value = entry.get("age")
        age = None
        if age_value is not None:
            match = re.fullmatch(r"\s*(-?\d+)(?:\.0*)?\s*(?:years?)?\s*", str(age_value))
            if match is None:
                notes.append(f"speaker {speaker}: age {age_value!r} is not a number, ignored")
            elif not PLAUSIBLE_AGES[0] <= int(match.group(1)) <= PLAUSIBLE_AGES[1]:
                notes.append(f"speaker {speaker}: impossible age {age_value!r}, ignored")
            else:
                age = int(match.group(1))
        clean[speaker] = {"gender": gender, "age": age}
    if missing:
        notes.append(f"no metadata for {len(missing)} speaker(s): {', '.join(missing)}")
    return clean, notes


def split_speakers(speakers: list[str], *, split: SplitParams, seed: int) -> dict[str, list[str]]:
    """Deal speakers into train, validation and test, none in two of them.

    Parameters
    ----------
    speakers : list of str
        Distinct speaker ids.
    split : SplitParams
        ``val_fraction`` and ``test_fraction``: shares of the speakers
        (rounded, at least one speaker each when the share is above zero).
    seed : int
        Seed of the shuffle; the result does not depend on the input order.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Raises
    ------
    PipelineError
        When too few speakers are left for training.
    """
    val_fraction, test_fraction = split.val_fraction, split.test_fraction
    ordered = sorted(set(speakers))
    shuffled = [ordered[i] for i in stream(seed, Stream.SPLIT).permutation(len(ordered))]
    n_test = max(1, round(test_fraction * len(ordered))) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * len(ordered))) if val_fraction > 0 else 0
    if len(ordered) - n_test - n_val < 1:
        raise PipelineError(
            f"only {len(ordered)} speaker(s): split.val_fraction = {val_fraction} and split.test_fraction = "
            f"{test_fraction} leave none for training; expected more speakers or smaller fractions"
        )
    return {
        "test": sorted(shuffled[:n_test]),
        "val": sorted(shuffled[n_test : n_test + n_val]),
        "train": sorted(shuffled[n_test + n_val :]),
    }
