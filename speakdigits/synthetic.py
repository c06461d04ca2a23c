"""A synthetic AudioMNIST: the ten digit words spoken by eSpeak NG voices.

Each speaker is a distinct voice: an English accent, a voice variant (which
fixes gender and, for some, an age), a base pitch and a speaking rate. Each
take of a digit jitters pitch and rate and adds a random lead-in, gain and
low-level noise, so that takes differ the way real recordings do. Everything
is drawn from the seed's synthetic streams (:mod:`speakdigits.streams`) and eSpeak NG is made
deterministic (see :mod:`speakdigits.espeak`), so the same parameters give
byte-identical files.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from speakdigits import espeak
from speakdigits.streams import Stream, stream

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# eSpeak NG's English accents that sound different from one another (en-gb-x-rp
# and en-us-nyc speak the digit words exactly like en and en-us).
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")

# Human-sounding variants with a declared gender (no robots, whispers or croaks).
VARIANTS = (
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "Alicia",
    "Andrea",
    "Annie",
    "anika",
    "aunty",
    "belinda",
    "linda",
    "steph",
    "steph2",
    "steph3",
    "grandma",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "Andy",
    "Denis",
    "Diogo",
    "Henrique",
    "Hugo",
    "Marco",
    "antonio",
    "michel",
    "miguel",
    "sandro",
    "travis",
    "victor",
)


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: one fixed voice."""

    speaker_id: str
    accent: str
    variant: str
    gender: str
    age: int | None
    pitch: int
    rate: int

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


def make_speakers(n_speakers: int, seed: int) -> list[Speaker]:
    """Design ``n_speakers`` distinct voices.

    Accent and variant pairs are dealt without repetition (216 of them) before
    any pair is reused; base pitch and rate are drawn per speaker, so even
    reused pairs sound different.

    Parameters
    ----------
    n_speakers : int
        How many speakers.
    seed : int
        Seed of the draw.

    Returns
    -------
    list of Speaker
        Speakers with ids ``'01'``, ``'02'``, ... (zero-padded like AudioMNIST).
    """
    pairs = list(itertools.product(ACCENTS, VARIANTS))
    order = stream(seed, Stream.SYNTHETIC_ORDER).permutation(len(pairs))
    width = max(2, len(str(n_speakers)))
    speakers = []
    for index in range(n_speakers):
        accent, variant_name = pairs[order[index % len(pairs)]]
        variant = espeak.voice_variant(variant_name)
        rng = stream(seed, Stream.SYNTHETIC_VOICE, index)
        speakers.append(
            Speaker(
                speaker_id=f"{index + 1:0{width}d}",
                accent=accent,
                variant=variant_name,
                gender=variant.gender,
                age=variant.age,
                pitch=int(rng.integers(20, 81)),
                rate=int(rng.integers(120, 191)),
            )
        )
    return speakers


def speak_takes(
    speaker: Speaker, takes: list[tuple[int, int]], *, seed: int, noise_db: float, duration: float = 1.0
) -> list[np.ndarray]:
    """Recordings of ``speaker`` saying each ``(digit, take)``, in order.

    The takes are spoken as one eSpeak NG sequence (see
    :func:`speakdigits.espeak.speak_sequence`): the same list gives the same
    samples, and the pipeline always asks for a speaker's takes in the same
    list (every digit, every take), whatever the number of processes.

    Parameters
    ----------
    speaker : Speaker
        Who speaks.
    takes : list of (int, int)
        Digit (0-9) and take number of each recording; each take differs in
        pitch, rate, lead-in, gain and noise.
    seed : int
        The dataset seed.
    noise_db : float
        Level of the background noise in dB relative to full scale.
    duration : float
        Nominal clip length in seconds; a clip is at least this long, longer
        when the voice speaks slowly (as in real recordings).

    Returns
    -------
    list of numpy.ndarray
        int16 samples at :func:`speakdigits.espeak.sample_rate`, one array per take.
    """
    rngs, utterances = [], []
    for digit, take in takes:
        rng = stream(seed, Stream.SYNTHETIC_TAKE, int(speaker.speaker_id), digit, take)
        pitch = int(np.clip(speaker.pitch + rng.integers(-6, 7), 0, 100))
        rate = int(round(speaker.rate * rng.uniform(0.9, 1.1)))
        utterances.append(
            espeak.Utterance(
                DIGIT_WORDS[digit],
                voice=speaker.voice,
                rate=rate,
                pitch=pitch,
                pitch_range=int(rng.integers(30, 71)),
                seed=int(rng.integers(1, 2**31 - 1)),
            )
        )
        rngs.append(rng)
    sr = espeak.sample_rate()
    clips = []
    for rng, spoken in zip(rngs, espeak.speak_sequence(utterances)):
        speech = spoken.astype(np.float64) / 32768.0
        lead_in = int(rng.uniform(0.02, 0.2) * sr)
        length = max(int(duration * sr), lead_in + len(speech) + int(0.02 * sr))
        clip = np.zeros(length)
        peak = np.abs(speech).max() if len(speech) else 0.0
        if peak > 0:
            gain_db = rng.uniform(-12.0, -1.0)
            clip[lead_in : lead_in + len(speech)] = speech / peak * 10 ** (gain_db / 20)
        clip += rng.normal(0.0, 10 ** (noise_db / 20), size=length)
        clips.append((np.clip(clip, -1.0, 32767 / 32768) * 32768).astype(np.int16))
    return clips


def speaker_metadata(speaker: Speaker) -> dict:
    """The speaker's entry in an AudioMNIST-style metadata file."""
    entry = {
        "accent": speaker.accent,
        "gender": speaker.gender,
        "native speaker": "no",
        "origin": "eSpeak NG synthetic voice",
        "recordingroom": "synthetic",
        "voice": speaker.voice,
        "pitch": speaker.pitch,
        "rate": speaker.rate,
    }
    if speaker.age is not None:
        entry["age"] = speaker.age
    return entry
