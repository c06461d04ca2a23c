"""The random streams: every draw named in one place, no two draws sharing numbers."""

from pathlib import Path

import numpy as np

from speakdigits.streams import Stream, clip_rng, stream

ROOT = Path(__file__).resolve().parents[1]


def test_every_stream_has_its_own_number():
    # An IntEnum member with a taken value silently becomes an alias of the first: two draws would share numbers.
    names = [line.split("=")[0].strip() for line in (ROOT / "speakdigits" / "streams.py").read_text().splitlines()]
    declared = [name for name in names if name.isupper() and name.isidentifier()]
    assert declared == list(Stream.__members__)
    assert len({int(s) for s in Stream}) == len(Stream)


def test_a_stream_is_its_seed_and_number_and_differs_from_a_clips_seed():
    # The numbers are part of every output: the split of speakers must stay the one drawn before streams had names.
    assert stream(42, Stream.SPLIT).permutation(10).tolist() == np.random.default_rng([42, 3]).permutation(10).tolist()
    assert stream(42, Stream.SYNTHETIC_TAKE, 1, 2).random() == np.random.default_rng([42, 2, 1, 2]).random()
    assert stream(42, Stream.SPLIT).random() != stream(42, Stream.REFERENCES).random()
    # NumPy pads a seed with zeros: a clip's seed meets stream 0 alone (documented in speakdigits.streams).
    shared = [s for s in Stream if clip_rng(42).random() == stream(42, s).random()]
    assert shared == [Stream.SYNTHETIC_ORDER]


def test_the_library_draws_only_through_the_named_streams():
    direct = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "speakdigits").rglob("*.py"))
        if path.name != "streams.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "default_rng(" in line or "np.random.seed(" in line
    ]
    assert direct == []
