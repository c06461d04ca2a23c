"""How well the VAE holds a voice: real clips said as every other digit, training speakers' voices saying
every digit, a walk from one voice to another, the latent map (the evaluate stage's voices).

The clips themselves come from :func:`speakdigits.evaluation.references` (each reference clip's voice
said as every digit) and from here; :mod:`speakdigits.voices` says what a voice is.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from speakdigits.formats.classifiers import read_classifiers_info
from speakdigits.formats.mfcc_judge import GENDER, SPEAKER, has_judge, read_judge_info
from speakdigits.generation import vocode_decoded
from speakdigits.judge import Judge
from speakdigits.judged import JudgedSet, judged_only
from speakdigits.listening import Heard, percent
from speakdigits.mfcc_judge import MfccJudge
from speakdigits.model import N_DIGITS, TrainedVAE, saying
from speakdigits.params import GenerateParams, MelParams
from speakdigits.voice_detail import VoiceDetail, interpolate
from speakdigits.voices import (
    latent_map,
    nearest_mean_accuracy,
    recording_voices,
    recordings_voice,
    saying_every_digit,
    speaker_voice,
)
from speakdigits.wav import wav_bytes

#: Source clips whose voice the listening page plays saying every digit, and the clips of its row
#: from one voice to another.
VOICE_ROWS = 3
INTERPOLATION_STEPS = 6


def voice_sources(refs: list[dict]) -> list[int]:
    """Indices of up to :data:`VOICE_ROWS` reference clips to show, a new speaker's first where there is one."""
    firsts = [i for i, ref in enumerate(refs) if ref["speaker"] not in {r["speaker"] for r in refs[:i]}]
    rest = [i for i in range(len(refs)) if i not in firsts]
    return (firsts + rest)[:VOICE_ROWS]


def spoken(
    vae: TrainedVAE,
    voices: np.ndarray,
    said: np.ndarray,
    latents: dict,
    *,
    mel: MelParams,
    mel_min: np.ndarray,
    mel_max: np.ndarray,
    generate: GenerateParams,
    seeds: list[int],
    detail: VoiceDetail | None = None,
) -> list[bytes]:
    """Wav files of ``voices`` (:mod:`speakdigits.voices`) saying the digits ``said``, made as generated
    clips are: the decoder's image, its contrast stretched, what the voice's latent vector misses added back
    (``detail``, per clip), then the vocoder (``mel_min``, ``mel_max``: the normalize stage's scaling,
    :func:`speakdigits.formats.normalized.load_stats`)."""
    images, pitch = vae.decode(saying(voices, said, latents), said)
    _, clips = vocode_decoded(
        images, pitch, mel=mel, mel_min=mel_min, mel_max=mel_max, generate=generate, seeds=seeds, detail=detail
    )
    return [wav_bytes(clip, mel.sample_rate) for clip in clips]


def interpolation(vae: TrainedVAE, latents: dict, refs: list[dict], *, seed: int, **making) -> dict | None:
    """From the first reference clip's voice to the next one's of another speaker (or the next clip's), saying
    the first clip's digit: ``start`` and ``end`` (indices into ``refs``), ``digit`` and ``wavs``; None for
    fewer than two references or an unconditional model. ``making``: :func:`spoken`'s settings."""
    if len(refs) < 2 or not vae.conditional:
        return None
    end = next((i for i, ref in enumerate(refs) if ref["speaker"] != refs[0]["speaker"]), 1)
    digit = refs[0]["digit"]
    voices = interpolate(refs[0]["voice"], refs[end]["voice"], INTERPOLATION_STEPS)
    detail = VoiceDetail.joined([refs[0]["detail"], refs[end]["detail"]])
    said = np.full(INTERPOLATION_STEPS, digit)
    wavs = spoken(
        vae,
        voices,
        said,
        latents,
        seeds=[seed] * INTERPOLATION_STEPS,
        detail=detail.between(INTERPOLATION_STEPS),
        **making,
    )
    return {"start": 0, "end": end, "digit": digit, "wavs": wavs}


def voiceless(vae: TrainedVAE, latents: dict, *, seed: int, **making) -> list[bytes] | None:
    """Every digit said from its centre alone, with no voice (a zero offset): what the decoder says for
    anyone. The speaker judge's verdicts on these are its bias, the share of conversions it would name the
    source speaker in without hearing any voice. None for an unconditional model. ``making``:
    :func:`spoken`'s settings."""
    if not vae.conditional:
        return None
    said = np.arange(N_DIGITS)
    return spoken(vae, np.zeros((N_DIGITS, vae.latent_dim)), said, latents, seeds=[seed] * N_DIGITS, **making)


def speaker_bias(
    kept: float | None,
    without_voice: float | None,
    *,
    measure: str = "voice_kept",
    clips: str = "converted clips",
    name: str | None = None,
) -> dict:
    """The sanity rule for a voice measure (``measure``, the speaker judge naming the speaker whose voice
    ``clips`` were said in): a speaker judge that names that speaker as often in clips with no voice at all
    (:func:`voiceless`) does not show that a voice was kept.

    Returns
    -------
    dict
        ``{measure}_without_voice`` and, when ``kept`` is not above it, ``warning``: one plain sentence
        naming the measure (``name``, by default ``measure``).
    """
    out = {f"{measure}_without_voice": without_voice}
    if kept is not None and without_voice is not None and kept <= without_voice:
        out["warning"] = (
            f"NO VOICE NEEDED: the speaker judge names the speaker in {percent(kept)} of the {clips}, but also "
            f"in {percent(without_voice)} of the same digits said with no voice at all, so {name or measure} "
            "does not show that the voice was kept"
        )
    return out


#: Most training speakers whose voices (``speakers.json``) say every digit for the known-voice measure.
KNOWN_SPEAKERS = 12


def known_voices(vae: TrainedVAE, latents: dict, speakers: dict, *, seed: int, **making) -> dict | None:
    """Up to :data:`KNOWN_SPEAKERS` training speakers' voices (as ``generate --speaker`` says one clip: at each
    digit their voice saying it and what that misses of them) saying every digit: ``speakers`` (one name per
    clip), ``digits`` and ``wavs``; None for an unconditional model. ``making``: :func:`spoken`'s settings."""
    if not vae.conditional or not speakers:
        return None
    names = sorted(speakers)[:KNOWN_SPEAKERS]
    who = [name for name in names for _ in range(N_DIGITS)]
    said = np.tile(np.arange(N_DIGITS), len(names))
    voices, details = zip(*(saying_every_digit(speaker_voice(speakers[name])) for name in names))
    detail = VoiceDetail.joined(list(details)) if all(d is not None for d in details) else None
    wavs = spoken(
        vae, np.concatenate(voices), said, latents, seeds=[seed + i for i in range(len(who))], detail=detail, **making
    )
    return {"speakers": who, "digits": said.tolist(), "wavs": wavs}


def take_voices(
    vae: TrainedVAE, latents: dict, clips: dict, groups: list[np.ndarray], *, seed: int, **making
) -> dict | None:
    """Voices of speakers the VAE never heard, each the mean of a few of their takes' voices (as ``generate
    --like`` makes one from several recordings), saying every digit: ``speakers`` (one name per clip),
    ``digits``, ``wavs``, ``voices`` (one offset per voice, :func:`speakdigits.voices.recording_voices`) and ``takes``
    (per voice, its clips' names, ``digit_speaker_take``); None for an unconditional model or no groups.

    One take's voice is mostly that take, its pace and level (the voice offsets vary 3 to 5 times as much
    within a speaker as between speakers), so a speaker's voice is measured from several.

    Parameters
    ----------
    clips : dict
        A split's arrays (the test speakers' takes the judges never heard).
    groups : list of numpy.ndarray
        Indices into ``clips``, one group of takes of one speaker per voice
        (:func:`speakdigits.evaluation.take_groups`).
    making
        :func:`spoken`'s settings.
    """
    if not vae.conditional or not groups:
        return None
    used = np.concatenate(groups)
    images, pitches, digits = clips["x"][used], clips["pitch"][used], clips["digit"][used]
    mu, _ = vae.encode(images, pitches, digits)
    offsets, details = recording_voices(
        vae,
        latents,
        images,
        pitches,
        digits,
        mu,
        latent_voice=making["generate"].latent_voice,
        mel=making["mel"],
        mel_min=making["mel_min"],
        mel_max=making["mel_max"],
    )
    at = np.cumsum([0, *(len(group) for group in groups)])
    # Each voice is the mean of its takes' and says every digit as generate --like says it from them: a digit
    # one of them says, as it.
    group_voices = [
        recordings_voice(offsets[at[k] : at[k + 1]], details.rows(slice(at[k], at[k + 1])), digits[at[k] : at[k + 1]])
        for k in range(len(groups))
    ]
    voices = np.array([voice.mean for voice in group_voices])
    each = [saying_every_digit(voice) for voice in group_voices]
    owner = np.repeat(np.arange(len(groups)), N_DIGITS)
    said = np.tile(np.arange(N_DIGITS), len(groups))
    wavs = spoken(
        vae,
        np.concatenate([v for v, _ in each]),
        said,
        latents,
        seeds=[seed + i for i in range(len(said))],
        detail=VoiceDetail.joined([d for _, d in each]),
        **making,
    )
    names = [[f"{clips['digit'][i]}_{clips['speaker'][i]}_{clips['take'][i]}" for i in group] for group in groups]
    return {
        "voices": voices,
        "speakers": [str(clips["speaker"][groups[k][0]]) for k in owner],
        "digits": said.tolist(),
        "wavs": wavs,
        "takes": names,
    }


class Hearing(NamedTuple):
    """What a classifier of speakers (or genders) made of some wav files (:func:`heard_by`)."""

    #: Its accuracy against the expected class names (None without the classifier or the files).
    accuracy: float | None
    #: Per clip: its verdict, ✓ or ✗, its confidence (None where it could not be heard).
    captions: list[str | None]
    #: Per clip: whether it heard the expected class.
    right: np.ndarray

    def by(self, groups: list[str]) -> dict[str, float]:
        """Its accuracy within each group of clips (``groups``, one name per clip), by name."""
        names = np.asarray(groups)
        return {name: float(np.mean(self.right[names == name])) for name in sorted(set(groups))}


def heard_by(judge: Judge | MfccJudge | None, wavs: list[bytes], expected: list[str]) -> Hearing:
    """A classifier of speakers (or genders) on wavs, against the class names ``expected`` (:class:`Hearing`;
    accuracy None and no captions without the classifier)."""
    if judge is None or not wavs:
        return Hearing(None, [None] * len(wavs), np.zeros(len(wavs), dtype=bool))
    heard = judge.wavs(wavs)
    wanted = [judge.classes.index(name) if name in judge.classes else -1 for name in expected]
    verdicts, confidence = heard.per_clip()
    captions = [
        None
        if verdict < 0
        else f"{judge.task} judge: {judge.classes[verdict]} {'✓' if verdict == want else '✗'} ({sure:.0%})"
        for verdict, sure, want in zip(verdicts, confidence, wanted)
    ]
    return Hearing(heard.accuracy(wanted), captions, np.asarray(verdicts) == np.asarray(wanted))


def optional_judge(classifier_dir: Path, task: str, **kwargs) -> Judge | None:
    """The classify stage's ``task`` classifier, or None where it could not be trained (too few classes)."""
    if task not in read_classifiers_info(classifier_dir)["tasks"]:
        return None
    return Judge.load(classifier_dir, task, **kwargs)


def judge_voices(
    refs: list[dict],
    interpolated: dict | None,
    known: dict | None,
    from_takes: dict | None,
    test: dict,
    *,
    without_voice: list[bytes] | None,
    judge: Judge,
    second: MfccJudge,
    classifier_dir: Path,
    mfcc_judge_dir: Path,
    reference_heard: dict[str, list[Heard]],
) -> tuple[dict, list[tuple[str, list[Heard]]]]:
    """How well the VAE's latent vector holds a voice: each reference clip converted to every other digit.

    The two digit judges should hear the new digit (``converted``, the lower of the two); the speaker
    judge, which has heard other takes of every speaker, should hear the source speaker (``voice_kept``,
    beside the same judge on the real clips, their vocoder versions and their reconstructions, and its
    own accuracy on unheard takes); where the data tell the speakers' genders, the MFCC gender judge, which
    never heard the sources' speakers, should hear the source's (``gender_kept``, beside the same judge on
    the sources as recorded and vocoded, and its accuracy; ``gender_mel``: the classify stage's log-mel gender
    judge on the same clips). The training speakers' voices (``known``, as
    ``generate --speaker`` says them) and the test speakers' voices from several takes (``from_takes``,
    :func:`take_voices`) are heard the same way (``known_voices``, ``take_voices``).

    Returns
    -------
    (dict, list)
        The metrics, and the listening page's rows: a few sources, each followed by its voice saying
        every digit, the first voice from several takes saying every digit, then the row from one voice
        to another.
    """
    if not refs or not refs[0]["converted"]:
        reason = "evaluate.voice_clips is 0" if not refs else "an unconditional model cannot be asked for another digit"
        return {"available": False, "reason": reason}, []
    gender_judge = optional_judge(classifier_dir, "gender", mel=judge.mel, mel_min=judge.mel_min, mel_max=judge.mel_max)
    speaker_judge = MfccJudge.load(mfcc_judge_dir, SPEAKER) if has_judge(mfcc_judge_dir, SPEAKER) else None
    pairs = [(i, d) for i, ref in enumerate(refs) for d in range(N_DIGITS) if d != ref["digit"]]
    converted = judged_only(judge, second, [refs[i]["converted"][d] for i, d in pairs], [d for _, d in pairs])
    out: dict = {
        "sources": len(refs),
        "source_speakers": sorted({ref["speaker"] for ref in refs}),
        "converted_clips": len(pairs),
        "converted_mel": converted.accuracy("mel"),
        "converted_mfcc": converted.accuracy("mfcc"),
    }
    out["converted"] = min(out["converted_mel"], out["converted_mfcc"])
    captions = {}
    if speaker_judge is not None:
        kept, captions = speaker_measures(
            speaker_judge, refs, converted, pairs, known, from_takes, without_voice, judge=judge, second=second
        )
        out["speaker_judge"] = {
            "accuracy": read_judge_info(mfcc_judge_dir, SPEAKER)["test_accuracy"],
            "speakers": len(speaker_judge.classes),
            "chance": 1 / len(speaker_judge.classes),
        }
        out |= kept
    else:
        out["speaker_judge"] = {"available": False, "reason": "one speaker only: no speaker judge (mfcc_judge)"}
    genders = dict(zip(test["speaker"].tolist(), test["gender"].tolist()))
    sources = {ref["speaker"] for ref in refs}
    # The MFCC gender judge where it never heard the sources; the log-mel one beside it, which cannot tell
    # whether a vocoded clip kept a gender (docs/results.md).
    if has_judge(mfcc_judge_dir, GENDER) and sources <= set(read_judge_info(mfcc_judge_dir, GENDER)["test_speakers"]):
        info, mfcc_gender = read_judge_info(mfcc_judge_dir, GENDER), MfccJudge.load(mfcc_judge_dir, GENDER)
        out["gender_judge"] = {"accuracy": info["test_accuracy"], "test_speakers": info["test_speakers"]}
        out |= gender_measures(mfcc_gender, refs, converted, pairs, genders)
        if "take_voices" in out:
            out["take_voices"]["gender_kept"] = heard_by(
                mfcc_gender, from_takes["wavs"], [genders[name] for name in from_takes["speakers"]]
            ).accuracy
    if gender_judge is not None and all(genders.get(name) in gender_judge.classes for name in sources):
        out["gender_mel"] = gender_measures(gender_judge, refs, converted, pairs, genders)

    rows = voice_rows(refs, converted, pairs, captions, reference_heard)
    if from_takes is not None:
        rows.append(take_voice_row(from_takes, captions.get("take_voices"), judge=judge, second=second))
    if interpolated is not None:
        row, out["interpolation_said"] = interpolation_row(refs, interpolated, judge=judge, second=second)
        rows.append(row)
    return out, rows


def gender_measures(
    gender_judge: Judge | MfccJudge, refs: list[dict], converted: JudgedSet, pairs: list[tuple[int, int]], genders: dict
) -> dict:
    """A gender judge on the reference clips as recorded and vocoded (``gender_kept_real``,
    ``gender_kept_vocoder``: what it can hear at best) and on their conversions (``gender_kept``, and within
    each source speaker's, ``gender_kept_per_speaker``); ``genders``, each speaker's."""
    out = {}
    for kind in ("real", "vocoder"):
        out[f"gender_kept_{kind}"] = heard_by(
            gender_judge, [ref[kind] for ref in refs], [genders[r["speaker"]] for r in refs]
        ).accuracy
    converted_heard = heard_by(gender_judge, converted.wavs, [genders[refs[i]["speaker"]] for i, _ in pairs])
    out["gender_kept"] = converted_heard.accuracy
    out["gender_kept_per_speaker"] = converted_heard.by([refs[i]["speaker"] for i, _ in pairs])
    return out


def speaker_measures(
    speaker_judge: MfccJudge,
    refs: list[dict],
    converted: JudgedSet,
    pairs: list[tuple[int, int]],
    known: dict | None,
    from_takes: dict | None,
    without_voice: list[bytes] | None,
    *,
    judge: Judge,
    second: MfccJudge,
) -> tuple[dict, dict[str, list[str | None]]]:
    """The speaker judge on the references (as recorded, vocoded, reconstructed; their voices said as their own
    digits as the conversions are made, ``voice_kept_own_digit``), on their conversions
    (``voice_kept``, and within each source speaker's, ``voice_kept_per_speaker``), on the training speakers'
    voices (``known_voices``) and on the unheard speakers' voices from several takes (``take_voices``,
    :func:`take_voices`), each beside the same judge on the same digits said with no voice
    (:func:`speaker_bias`), and its captions per clip."""
    out, captions = {}, {}
    sources = [ref["speaker"] for ref in refs]
    for kind, key in (
        ("real", "voice_kept_real"),
        ("vocoder", "voice_kept_vocoder"),
        ("vae", "voice_kept_reconstructed"),
    ):
        out[key], captions[kind], _ = heard_by(speaker_judge, [ref[kind] for ref in refs], sources)
    in_voice = [ref for ref in refs if ref.get("in_voice") is not None]
    if in_voice:
        out["voice_kept_own_digit"] = heard_by(
            speaker_judge, [ref["in_voice"] for ref in in_voice], [ref["speaker"] for ref in in_voice]
        ).accuracy
    owners = [refs[i]["speaker"] for i, _ in pairs]
    kept = heard_by(speaker_judge, converted.wavs, owners)
    out["voice_kept"], captions["converted"] = kept.accuracy, kept.captions
    out["voice_kept_per_speaker"] = kept.by(owners)

    def bias(digits: list[int], speakers: list[str]) -> float | None:
        """The judge naming ``speakers`` in the same ``digits`` said with no voice."""
        if without_voice is None:
            return None
        return heard_by(speaker_judge, [without_voice[d] for d in digits], speakers).accuracy

    out["speaker_bias"] = speaker_bias(
        out["voice_kept"], bias([d for _, d in pairs], [refs[i]["speaker"] for i, _ in pairs])
    )

    def every_digit(voices: dict, clips: str, name: str) -> dict:
        """Voices saying every digit, heard as the digits (``said``, the lower judge) and as their speakers."""
        heard = judged_only(judge, second, voices["wavs"], voices["digits"])
        kept, captions[name], _ = heard_by(speaker_judge, voices["wavs"], voices["speakers"])
        return {"said": min(heard.accuracy("mel"), heard.accuracy("mfcc")), "kept": kept} | speaker_bias(
            kept, bias(voices["digits"], voices["speakers"]), measure="kept", clips=clips, name=f"{name}.kept"
        )

    if known is not None:
        out["known_voices"] = {"speakers": len(set(known["speakers"]))} | every_digit(
            known, "training speakers' voices", "known_voices"
        )
    if from_takes is not None:
        out["take_voices"] = {
            "voices": len(from_takes["takes"]),
            "takes": len(from_takes["takes"][0]),
            "speakers": len(set(from_takes["speakers"])),
        } | every_digit(from_takes, "unheard speakers' voices from several takes", "take_voices")
    return out, captions


def voice_rows(
    refs: list[dict],
    converted: JudgedSet,
    pairs: list[tuple[int, int]],
    captions: dict[str, list[str | None]],
    reference_heard: dict[str, list[Heard]],
) -> list[tuple[str, list[Heard]]]:
    """The listening page's voices: a few sources (:func:`voice_sources`), each followed by its voice
    saying every digit (its own digit: its reconstruction), with the speaker judge's captions."""
    heard = converted.heard(
        names=[f"{i:03d}_as_{d}" for i, d in pairs],
        titles=[f"says {d}" for _, d in pairs],
    )
    if "converted" in captions:
        heard = [replace(h, voice=c) for h, c in zip(heard, captions["converted"])]
    by_pair = dict(zip(pairs, heard))
    rows = []
    for i in voice_sources(refs):
        source = replace(reference_heard["real"][i], voice=captions.get("real", [None] * len(refs))[i])
        own = replace(
            reference_heard["vae"][i],
            title=f"says {refs[i]['digit']} (its own)",
            voice=captions.get("vae", [None] * len(refs))[i],
        )
        spoken = [by_pair.get((i, d), own) for d in range(N_DIGITS)]
        rows.append((f"the voice of {Path(refs[i]['member']).name}", [source, *spoken]))
    return rows


def take_voice_row(
    from_takes: dict, captions: list[str | None] | None, *, judge: Judge, second: MfccJudge
) -> tuple[str, list[Heard]]:
    """The page's row of the first voice from several takes (:func:`take_voices`) saying every digit, with the
    speaker judge's captions."""
    said = from_takes["digits"][:N_DIGITS]
    heard = judged_only(judge, second, from_takes["wavs"][:N_DIGITS], said).heard(
        names=[f"takes_0_says_{d}" for d in said], titles=[f"says {d}" for d in said]
    )
    if captions is not None:
        heard = [replace(h, voice=c) for h, c in zip(heard, captions)]
    takes = from_takes["takes"][0]
    return f"the voice of {len(takes)} takes of {from_takes['speakers'][0]} ({', '.join(takes)})", heard


def interpolation_row(
    refs: list[dict], interpolated: dict, *, judge: Judge, second: MfccJudge
) -> tuple[tuple[str, list[Heard]], float | None]:
    """The page's row from one voice to another (:func:`interpolation`), and the share of its steps the digit
    judge hears saying the digit."""
    steps = judged_only(judge, second, interpolated["wavs"], [interpolated["digit"]] * len(interpolated["wavs"]))
    start, end = (Path(refs[interpolated[k]]["member"]).name for k in ("start", "end"))
    step_heard = steps.heard(
        names=[f"between_{k}" for k in range(len(steps.wavs))],
        titles=[f"{k / max(1, len(steps.wavs) - 1):.0%} of the way" for k in range(len(steps.wavs))],
    )
    return (f"from {start} to {end}, saying {interpolated['digit']}", step_heard), steps.accuracy("mel")


def latent_space(vae: TrainedVAE, test: dict) -> tuple[dict, tuple | None]:
    """Where the test speakers' clips lie in latent space: how clearly digit and speaker show there
    (:func:`speakdigits.voices.nearest_mean_accuracy`; ideally the digit not at all, as the decoder is told
    it), and the 2-D map's ``(coords, digits, speakers, explained)`` (None for fewer than two clips)."""
    if len(test["x"]) < 2:
        return {"clips": len(test["x"])}, None
    mu, _ = vae.encode(test["x"], test["pitch"], test["digit"])
    coords, explained = latent_map(mu)
    out = {
        "clips": len(mu),
        "speakers": len(set(test["speaker"].tolist())),
        "explained_variance": [float(v) for v in explained],
    }
    for key, labels in (("digit_separation", test["digit"]), ("speaker_separation", test["speaker"])):
        separation = nearest_mean_accuracy(mu, labels)
        if separation == separation:  # NaN: fewer than two digits or speakers to tell apart
            out[key] = separation
    return out, (coords, test["digit"], test["speaker"], explained)
