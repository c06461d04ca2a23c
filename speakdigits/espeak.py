"""Offline speech from the eSpeak NG library bundled by ``espeakng-loader``.

The library is driven through ctypes. eSpeak NG keeps synthesis state between
utterances (waveform phase, noise generators) that no API call resets, so the
same text and settings give different samples depending on what was spoken
before. To make speech a pure function of its arguments, a fixed sequence of
utterances is spoken in a short-lived child process forked from a process
whose library state is fresh: the child inherits the untouched state, speaks
the sequence in order, sends the samples back through a pipe and exits. Each
utterance then depends only on itself and those before it in its sequence.
A fork per sequence rather than per utterance: a fresh child spends about
10 ms loading the voice and warming up, speaking one digit word takes 1 ms.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np

from speakdigits.errors import PipelineError

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_RATE, _PITCH, _RANGE = 1, 3, 4  # espeak_PARAMETER values from speak_lib.h
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class VoiceVariant:
    """One of eSpeak NG's voice variants (``voices/!v/<name>``)."""

    name: str
    gender: str
    age: int | None


def voice_variant(name: str) -> VoiceVariant:
    """Read a voice variant's declared gender and age from eSpeak NG's data.

    Parameters
    ----------
    name : str
        File name of the variant, e.g. ``'f3'`` or ``'m1'``.

    Returns
    -------
    VoiceVariant
        ``gender`` is ``'female'``, ``'male'`` or ``'unknown'``; ``age`` is
        ``None`` where the variant file declares none.
    """
    path = Path(espeakng_loader.get_data_path()) / "voices" / "!v" / name
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise PipelineError(f"{path}: eSpeak NG voice variant '{name}' not found in espeakng-loader's data") from None
    match = re.search(r"^gender\s+(\w+)(?:\s+(\d+))?", text, flags=re.MULTILINE)
    if not match:
        return VoiceVariant(name, "unknown", None)
    gender = match.group(1).lower()
    return VoiceVariant(
        name, gender if gender in ("female", "male") else "unknown", int(match.group(2)) if match.group(2) else None
    )


class _Engine:
    """The loaded library with a fresh, never-used synthesis state."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.sample_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if self.sample_rate <= 0:
            raise PipelineError("eSpeak NG failed to initialise from espeakng-loader's data folder")
        self.chunks: list[np.ndarray] = []
        # Keep a reference: ctypes callbacks must outlive their registration.
        self.callback = _SYNTH_CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self.callback)
        self.libc = ctypes.CDLL(None)

    def _collect(self, wav, n, _events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def speak_here(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int) -> np.ndarray:
        """Speak in this process (changes the library state)."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise PipelineError(f"eSpeak NG has no voice '{voice}'")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        # eSpeak NG draws from its own generator and, in places, from libc's rand().
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self.libc.srand(ctypes.c_uint(seed))
        self.chunks.clear()
        encoded = text.encode()
        if self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None, None) != 0:
            raise PipelineError(f"eSpeak NG could not speak {text!r} with voice '{voice}'")
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


@functools.cache
def _engine() -> _Engine:
    return _Engine()


def sample_rate() -> int:
    """The sample rate of eSpeak NG's output, in Hz."""
    return _engine().sample_rate


@dataclass(frozen=True)
class Utterance:
    """What to say and how (see :func:`speak`)."""

    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int = 50
    seed: int = 0


def speak_sequence(utterances: list[Utterance]) -> list[np.ndarray]:
    """Speak ``utterances`` in order in one fresh child process.

    The result is identical for an identical sequence, whatever was spoken
    before in this process or elsewhere; an utterance may sound different
    in another sequence.

    Returns
    -------
    list of numpy.ndarray
        int16 mono samples at :func:`sample_rate`, one array per utterance.
    """
    engine = _engine()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: speak with the inherited fresh state, then leave
        status = 0
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as pipe:
                for u in utterances:
                    samples = engine.speak_here(u.text, u.voice, u.rate, u.pitch, u.pitch_range, u.seed)
                    pipe.write(np.int64(len(samples)).tobytes() + samples.astype("<i2").tobytes())
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    results, offset = [], 0
    for _ in utterances:
        if status != 0 or offset + 8 > len(data):
            break
        count = int(np.frombuffer(data, dtype="<i8", count=1, offset=offset)[0])
        results.append(np.frombuffer(data, dtype="<i2", count=count, offset=offset + 8).astype(np.int16))
        offset += 8 + 2 * count
    if len(results) < len(utterances):
        u = utterances[len(results)]
        raise PipelineError(
            f"eSpeak NG failed to speak {u.text!r} with voice '{u.voice}' (rate {u.rate}, pitch {u.pitch})"
        )
    return results


def speak(text: str, *, voice: str, rate: int, pitch: int, pitch_range: int = 50, seed: int = 0) -> np.ndarray:
    """Speak ``text`` and return the samples, identical for identical arguments.

    Parameters
    ----------
    text : str
        What to say.
    voice : str
        eSpeak NG voice name, optionally with a variant: ``'en-us+f3'``.
    rate : int
        Speaking rate in words per minute (80-450).
    pitch : int
        Base pitch, 0-100 (50 is the voice's normal pitch).
    pitch_range : int
        Pitch range, 0-100 (0 is monotone).
    seed : int
        Seed for eSpeak NG's random choices (noise in fricatives and the like).

    Returns
    -------
    numpy.ndarray
        int16 mono samples at :func:`sample_rate`.
    """
    return speak_sequence([Utterance(text, voice, rate, pitch, pitch_range, seed)])[0]
