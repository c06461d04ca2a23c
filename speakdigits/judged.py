"""Sets of clips heard by both digit judges: their verdicts, accuracies and how each clip is shown.

The evaluate stage hears every set of clips (generated, the references, the
voices) the same way: the digit judge (:class:`speakdigits.judge.Judge`, the
pipeline's log-mel) and the MFCC judge (:class:`speakdigits.mfcc_judge.MfccJudge`)
each give a verdict per clip, a clip neither can hear counts as wrong, and the
listening page shows both verdicts beside each clip (:class:`speakdigits.listening.Heard`).
"""

from __future__ import annotations

from dataclasses import dataclass

from speakdigits.classifier import Verdicts
from speakdigits.judge import Judge
from speakdigits.listening import Heard
from speakdigits.mfcc_judge import MfccJudge
from speakdigits.quality import measure_many


@dataclass(frozen=True)
class JudgedSet:
    """A set of clips, heard by both judges and measured (:mod:`speakdigits.quality`)."""

    wavs: list[bytes]
    expected: list[int | None]
    mel: Verdicts  # the digit judge's (:meth:`Judge.wavs`)
    mfcc: Verdicts  # the MFCC judge's (:meth:`MfccJudge.wavs`)
    sound: list[dict]  # :func:`speakdigits.quality.measure`, one per clip

    def accuracy(self, judge: str) -> float | None:
        """Share of clips the ``'mel'`` or ``'mfcc'`` judge hears as expected (None: nothing was asked)."""
        if any(e is None for e in self.expected):
            return None
        return (self.mel if judge == "mel" else self.mfcc).accuracy(self.expected)

    def heard(self, *, names: list[str], titles: list[str]) -> list[Heard]:
        """Every clip as the listening page shows it."""
        verdicts, confidence = self.mel.per_clip()
        second, second_confidence = self.mfcc.per_clip()
        return [
            Heard(
                name=name,
                title=title,
                wav=self.wavs[i],
                mel_db=self.mel.mels_db[i],
                expected=self.expected[i],
                verdict=int(verdicts[i]) if verdicts[i] >= 0 else None,
                confidence=float(confidence[i]) if verdicts[i] >= 0 else None,
                problem=self.mel.problems[i],
                second_verdict=int(second[i]) if second[i] >= 0 else None,
                second_confidence=float(second_confidence[i]) if second[i] >= 0 else None,
                sound=self.sound[i],
            )
            for i, (name, title) in enumerate(zip(names, titles))
        ]


def judge_sets(
    judge: Judge, second: MfccJudge, sets: dict[str, tuple[list[bytes], list]], references: dict[str, list]
) -> dict[str, JudgedSet]:
    """Both judges and every measure on each named set of ``(wavs, expected digits)``; the clips of a set
    named in ``references`` are also rated against those wavs (PESQ). The measures of every set run in
    one pool of worker processes."""
    names = list(sets)
    wavs = [wav for name in names for wav in sets[name][0]]
    against = [ref for name in names for ref in references.get(name, [None] * len(sets[name][0]))]
    sound = measure_many(wavs, against)
    out, start = {}, 0
    for name in names:
        clips, expected = sets[name]
        out[name] = JudgedSet(clips, expected, judge.wavs(clips), second.wavs(clips), sound[start : start + len(clips)])
        start += len(clips)
    return out


def judged_only(judge: Judge, second: MfccJudge, wavs: list[bytes], expected: list[int]) -> JudgedSet:
    """A set heard by both digit judges but not measured for sound (its captions give no DNSMOS, no pYIN)."""
    return JudgedSet(wavs, expected, judge.wavs(wavs), second.wavs(wavs), [None] * len(wavs))
