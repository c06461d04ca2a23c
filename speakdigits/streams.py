"""The pipeline's random streams, named in one place.

Every NumPy draw comes from the run's seed and one :class:`Stream`:
``stream(seed, Stream.SPLIT)`` is ``numpy.random.default_rng([seed, 3])``.
Each draw having its own number keeps the draws apart: the speakers' split
does not change when generation draws more voices, and no two draws share
numbers by accident. The numbers are part of the outputs, so they never
change; a new draw takes a new number.

Two other kinds of seed are not streams:

- a clip's seed (:func:`clip_rng`): the vocoders draw a clip's noise and
  phases from ``default_rng(seed + index)``, so that a clip sounds the same
  whichever other clips are made with it. NumPy pads a seed with zeros, so
  ``default_rng(s)`` is ``default_rng([s, 0])``: clip 0's noise uses the
  numbers of :attr:`Stream.SYNTHETIC_ORDER`. That one overlap is harmless
  (it orders the synthetic speakers' voices, drawn once from the data's own
  seed) and kept, since removing it would remake the synthetic data;
- Keras and TensorFlow (weights, shuffling, the VAE's sampling) are seeded
  with the run's seed by :func:`speakdigits.runtime.make_deterministic`.
"""

from __future__ import annotations

import enum

import numpy as np


class Stream(enum.IntEnum):
    """The named draws, by the number that follows the seed."""

    #: synthetic data: the order in which speakers take their voices
    SYNTHETIC_ORDER = 0
    #: synthetic data: each speaker's voice (then the speaker's index)
    SYNTHETIC_VOICE = 1
    #: synthetic data: each take's variation (then speaker, digit, take)
    SYNTHETIC_TAKE = 2
    #: normalize: which speakers are held out for validation and test
    SPLIT = 3
    #: generate: the latent vectors of generated clips
    GENERATED_LATENTS = 4
    #: evaluate: which real test clips are the references
    REFERENCES = 5
    #: evaluate: which validation clips the VAE reconstructs
    VALIDATION_CLIPS = 6
    #: evaluate: the test clips that are the novelty yardstick
    NOVELTY_YARDSTICK = 7
    #: generate --like, --speaker, --between: draws around a chosen voice
    CHOSEN_VOICE = 8
    #: evaluate: which unheard takes of a test speaker make each of their voices (several takes each)
    TAKE_VOICES = 9


def stream(seed: int, name: Stream, *keys: int) -> np.random.Generator:
    """The generator of draw ``name`` under ``seed``; ``keys`` make one stream per item (a speaker, a take)."""
    return np.random.default_rng([seed, int(name), *keys])


def clip_rng(seed: int) -> np.random.Generator:
    """The generator of one clip's vocoder noise: ``seed`` is the run's seed plus the clip's index."""
    return np.random.default_rng(seed)
