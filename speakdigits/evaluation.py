"""The ``evaluate`` stage: do the generated voices say the digit asked for, and do they sound spoken?

Two digit judges hear every clip, and a judge is only as good as its own
accuracy, so that comes first: each one's accuracy on real takes it never heard
(held-out takes, see :mod:`speakdigits.classifier`). The first (the classify
stage's) hears the pipeline's own log-mel images; below
``evaluate.trusted_judge_accuracy`` the metrics and the listening page say
plainly that its figures are unreliable. The second (:mod:`speakdigits.mfcc_judge`)
hears the audio through a front end of its own. The headline accuracy is the
lower of the two. A judge that hears generated clips better than real
recordings flatters the generator, and the metrics and the page say so
(:func:`flattery`).

Everything is heard as audio:

- the generated wav files (data/generated);
- real clips of the test speakers that the judges never heard (their held-out
  takes), as the pipeline prepares them (trimmed, peak-normalised, one
  second), and the same clips rebuilt from their own mel and pitch track by
  the vocoder (the *vocoder ceiling*: the best a perfect generator of features
  could do);
- the VAE's reconstructions of those clips, through the same vocoder.

Each clip is also measured for how it sounds, with tools that never see the
pipeline's features (:mod:`speakdigits.quality`): its voiced share and f0
(pYIN), DNSMOS, and, for the rebuilt clips, PESQ against the real one. The
generated mels are compared with the training clips (:mod:`speakdigits.novelty`),
to tell new voices from replayed ones.

Besides the metrics (``metrics/evaluate.json``) it writes the listening page,
``data/listen/index.html``, with every clip it judged.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from speakdigits.audio import prepare
from speakdigits.classifier import take_split
from speakdigits.files import atomic_dir
from speakdigits.formats import raw
from speakdigits.formats.classifiers import read_classifiers_info
from speakdigits.formats.generated import read_generated, read_generated_mels
from speakdigits.formats.mfcc_judge import read_judge_info
from speakdigits.formats.model import load_vae, read_geometry, read_latents, read_speakers
from speakdigits.formats.normalized import denormalize, load_split, load_stats
from speakdigits.generation import vocode_decoded
from speakdigits.judge import Judge, accuracy, class_histogram, frechet_distance, summary
from speakdigits.judged import JudgedSet, judge_sets
from speakdigits.listening import LATENT_MAP_PNG, percent, write_listening_page
from speakdigits.mfcc_judge import MfccJudge
from speakdigits.model import N_DIGITS, TrainedVAE, saying
from speakdigits.novelty import novelty
from speakdigits.params import EvaluateParams, GenerateParams, MelParams
from speakdigits.pitch import F0, VOICING, from_unit
from speakdigits.quality import summarize
from speakdigits.streams import Stream, stream
from speakdigits.vocoder import synthesize_many
from speakdigits.voice_evaluation import (
    interpolation,
    judge_voices,
    known_voices,
    latent_space,
    take_voices,
    voiceless,
)
from speakdigits.voices import features, recording_voices, save_latent_map
from speakdigits.wav import BadClip, wav_bytes

# Reconstructed clips of unheard speakers, the novelty yardstick: enough for a stable median and a
# 1 % quantile, few enough that the distances stay quick at AudioMNIST's size.
NOVELTY_REFERENCE_CLIPS = 500
#: The references' three versions of each clip, in the page's column order, and the title of the two made ones.
REFERENCE_KINDS = (("real", None), ("vocoder", "its mel and pitch, vocoded"), ("vae", "VAE reconstruction, vocoded"))


def digits_in_turn(digits: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``digits`` ordered so that digits take turns: one clip of each digit, then a second of
    each, ...; within a digit the order is a shuffle drawn from ``rng``.

    Any prefix of the order then covers the digits evenly (the judge's embeddings cluster by digit, so
    an uneven draw alone would move a Fréchet distance or a median).
    """
    digits = np.asarray(digits)
    queues = [np.flatnonzero(digits == d)[rng.permutation(int(np.sum(digits == d)))] for d in np.unique(digits)]
    longest = max((len(q) for q in queues), default=0)
    return np.array([q[turn] for turn in range(longest) for q in queues if turn < len(q)], dtype=np.int64)


def digits_evenly(digits: np.ndarray, count: int, *, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``count`` of ``digits``, the digits in turn (:func:`digits_in_turn`), in ascending order."""
    return np.sort(digits_in_turn(digits, rng=rng)[:count])


#: Most voices of unheard speakers, each the mean of ``evaluate.voice_takes`` of their takes, that say every
#: digit (:func:`take_groups`): 160 clips at most, whatever the data.
TAKE_VOICES = 16


def take_groups(clips: dict, takes: int, *, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to :data:`TAKE_VOICES` groups of ``takes`` clips of one speaker (indices into ``clips``, a split's
    arrays), for :func:`speakdigits.voice_evaluation.take_voices`.

    Within a speaker the digits take turns (:func:`digits_in_turn`), so a group's takes say different
    digits; the speakers take turns too, so that the cap leaves none of them out. A speaker with fewer than
    ``takes`` clips gives no group; ``takes`` 0 gives none at all.
    """
    if takes < 1:
        return []
    groups = []
    for name in sorted(set(clips["speaker"].tolist())):
        rows = np.flatnonzero(clips["speaker"] == name)
        order = rows[digits_in_turn(clips["digit"][rows], rng=rng)]
        groups.append([order[start : start + takes] for start in range(0, len(order) - takes + 1, takes)])
    turns = max((len(g) for g in groups), default=0)
    return [g[turn] for turn in range(turns) for g in groups if turn < len(g)][:TAKE_VOICES]


def unheard(split: dict, *, holdout_takes: float) -> dict:
    """The clips of a split that the digit judge never heard: each speaker's held-out takes."""
    keep = take_split(split["speaker"], split["digit"], split["take"], fraction=holdout_takes) == "test"
    return {key: values[keep] for key, values in split.items()}


def reference_candidates(raw_dir: Path, clips: dict, *, rng: np.random.Generator) -> list[tuple[str, int]]:
    """The raw files of ``clips`` (a split's arrays), ``(member, digit)``, in the order to use them.

    Raw files are matched by digit, speaker and take; digits take turns
    (:func:`digits_in_turn`), so that any number of references covers the
    digits evenly.
    """
    wanted = {(int(d), str(s), int(t)) for d, s, t in zip(clips["digit"], clips["speaker"], clips["take"])}
    found = []
    for member in sorted(raw.clip_names(raw_dir)):
        parsed = raw.parse_clip_name(member)
        if parsed is not None and tuple(parsed) in wanted:
            found.append((member, parsed[0]))
    order = digits_in_turn(np.array([digit for _, digit in found]), rng=rng) if found else []
    return [found[i] for i in order]


def references(
    judge: Judge,
    vae: TrainedVAE,
    latents: dict,
    raw_dir: Path,
    candidates: list[tuple[str, int]],
    *,
    count: int,
    voice_clips: int,
    mel: MelParams,
    generate: GenerateParams,
    seed: int,
) -> list[dict]:
    """Up to ``count`` real clips, each as the pipeline prepares it, through the vocoder and through the VAE.

    The vocoder version rebuilds the clip from its own features, as the
    pipeline represents them (the mel scaled to [0, 1] and back, so clipped to
    the training range, and the pitch track), with the generate stage's
    vocoder: what the vocoder alone allows. The VAE version decodes the
    encoder's mean (z = μ) instead, and stretches its contrast as generation
    does. Clips the extract stage would skip are skipped here too.

    Parameters
    ----------
    judge : Judge
        Holds the scaling statistics.
    vae : TrainedVAE
        The trained model.
    latents : dict
        Its digits' centres in latent space (``latents.json``).
    raw_dir : Path
        Output of the download stage.
    candidates : list of (str, int)
        Raw members and their digits, in the order to use them
        (:func:`reference_candidates`).
    count : int
        How many clips (``evaluate.reference_clips``).
    voice_clips : int
        How many of them are said as every digit (``evaluate.voice_clips``).
    mel : MelParams
        The geometry of the features.
    generate : GenerateParams
        The vocoder's settings.
    seed : int
        Seed of the vocoder's noise (or initial phases).

    Returns
    -------
    list of dict
        Per clip: ``member``, ``digit``, ``speaker``, ``voice`` (its
        posterior mean's offset from its digit's centre times ``generate.latent_voice``,
        :func:`speakdigits.voices.recording_voices`), and ``real`` (the prepared clip),
        ``vocoder``, ``vae`` wav bytes, and ``converted``: ten wavs, its voice
        said as every digit (the clip's own is its ``vae`` version), for the
        first ``voice_clips`` clips of a conditional model, else none; for
        those, ``in_voice``: its voice said as its own digit as the
        conversions are made (else None).
    """
    chosen = prepared_clips(raw_dir, candidates, count=count, mel=mel, mel_min=judge.mel_min, mel_max=judge.mel_max)
    if not chosen:
        return []
    images, pitches = np.stack([c["image"] for c in chosen]), np.stack([c["pitch"] for c in chosen])
    own = np.array([c["digit"] for c in chosen])
    mu, _ = vae.encode(images, pitches, own)
    # The first voice_clips clips' voices said as every digit: its own digit gives a clip's own z back (its
    # reconstruction), the others convert it (speakdigits.voices). The other clips, and every clip of an
    # unconditional model (which is not told a digit), are reconstructed only.
    voices, details = (
        recording_voices(
            vae,
            latents,
            images,
            pitches,
            own,
            mu,
            latent_voice=generate.latent_voice,
            mel=mel,
            mel_min=judge.mel_min,
            mel_max=judge.mel_max,
        )
        if vae.conditional
        else (None, None)
    )
    said_by = [list(range(N_DIGITS)) if vae.conditional and i < voice_clips else [d] for i, d in enumerate(own)]
    owner = np.array([i for i, digits in enumerate(said_by) for _ in digits])
    said = np.array([d for digits in said_by for d in digits])
    own_digit = said == own[owner]
    z = np.where(own_digit[:, None], mu[owner], saying(voices[owner], said, latents)) if vae.conditional else mu
    # And each of those voices said as its own digit the way its conversions are made (its share of the offset,
    # its detail): what the voice keeps when the digit does not change, the conversions' own ceiling.
    in_voice = np.array([i for i, digits in enumerate(said_by) if len(digits) == N_DIGITS], dtype=np.int64)
    if len(in_voice):
        z = np.concatenate([z, saying(voices[in_voice], own[in_voice], latents)])
        owner, said = np.concatenate([owner, in_voice]), np.concatenate([said, own[in_voice]])
    vocoded = synthesize_many(
        denormalize(images, judge.mel_min, judge.mel_max),
        from_unit(pitches),
        mel=mel,
        vocoder=generate.vocoder,
        n_iter=generate.vocoder_iters,
        momentum=generate.griffin_lim_momentum,
        aperiodicity=generate.aperiodicity,
        seeds=[seed + index for index in range(len(chosen))],
    )
    # Each source clip's versions share its seed: a clip's conversions differ only in what is said. Its
    # conversions get back what its voice's latent vector misses, as generate --like does; its own digit is
    # the VAE's reconstruction, as it is.
    converted = (
        details.rows(owner).without(np.concatenate([own_digit, np.zeros(len(in_voice), dtype=bool)]))
        if details is not None
        else None
    )
    _, spoken = vocode_decoded(
        *vae.decode(z, said),
        mel=mel,
        mel_min=judge.mel_min,
        mel_max=judge.mel_max,
        generate=generate,
        seeds=[seed + index for index in owner],
        detail=converted,
    )
    for index, clip in enumerate(chosen):
        clip["vocoder"] = wav_bytes(vocoded[index], mel.sample_rate)
        spoken_wavs = [wav_bytes(spoken[row], mel.sample_rate) for row in np.flatnonzero(owner == index)]
        clip["vae"] = spoken_wavs[said_by[index].index(clip["digit"])]
        clip["converted"] = spoken_wavs[:N_DIGITS] if len(spoken_wavs) > N_DIGITS else []
        clip["in_voice"] = spoken_wavs[N_DIGITS] if len(spoken_wavs) > N_DIGITS else None
        clip["voice"] = voices[index] if voices is not None else None
        clip["detail"] = details.rows(slice(index, index + 1)) if details is not None else None
        del clip["image"], clip["pitch"]
    return chosen


def prepared_clips(
    raw_dir: Path,
    candidates: list[tuple[str, int]],
    *,
    count: int,
    mel: MelParams,
    mel_min: np.ndarray,
    mel_max: np.ndarray,
) -> list[dict]:
    """The first ``count`` candidates that the extract stage would keep, as it prepares them: per clip its
    ``member``, ``digit``, ``speaker``, ``real`` wav bytes, its normalised ``image`` and ``pitch`` track."""
    chosen = []
    with zipfile.ZipFile(Path(raw_dir) / raw.AUDIO_ZIP) as archive:
        for member, digit in candidates:
            if len(chosen) == count:
                break
            try:
                samples = prepare(archive.read(member), mel)
            except BadClip:
                continue
            image, pitch = features(samples, mel=mel, mel_min=mel_min, mel_max=mel_max)
            chosen.append(
                {
                    "member": member,
                    "digit": digit,
                    "speaker": raw.parse_clip_name(member)[1],
                    "real": wav_bytes(samples, mel.sample_rate),
                    "image": image,
                    "pitch": pitch,
                }
            )
    return chosen


def rebuild(vae: TrainedVAE, split: dict) -> np.ndarray:
    """The VAE's reconstructed mels (z = μ, clipped) of every clip of a split."""
    if len(split["x"]) == 0:
        return np.zeros_like(split["x"])
    return vae.reconstruct(split["x"], split["pitch"], split["digit"])[0]


def vae_reconstruction(judge: Judge, test: dict, rebuilt: np.ndarray) -> dict:
    """The VAE on every test clip, from its reconstructions (:func:`rebuild`): mean squared error
    (normalised units, as the train stage reports it, but clipped to [0, 1] as generation does) and the
    judge's accuracy on the reconstructed mels themselves (no audio)."""
    if len(test["x"]) == 0:
        return {}
    probs, _ = judge.images(rebuilt)
    return {
        "reconstruction_mse": float(np.mean((rebuilt - test["x"]) ** 2)),
        "judge_accuracy_mel": accuracy(probs, test["digit"]),
    }


def real_frechet_floor(judge: Judge, val: dict, test_embeddings: np.ndarray, *, count: int, seed: int) -> float | None:
    """Fréchet distance from up to ``count`` real validation clips to the real test clips.

    What a generator as good as real speech would score: other speakers than
    the test ones, as many clips as were generated where there are that many
    (the estimate grows as the sample shrinks) and, like the generated set,
    the digits in turn. None when there are no such clips.
    """
    if count == 0 or len(val["x"]) == 0 or len(test_embeddings) == 0:
        return None
    pick = digits_evenly(val["digit"], count, rng=stream(seed, Stream.VALIDATION_CLIPS))
    return frechet_distance(judge.images(val["x"][pick])[1], test_embeddings)


def judge_reliability(test_accuracy: float, *, holdout_takes: float, trusted_accuracy: float) -> dict:
    """What the judge's verdicts are worth: its accuracy on real takes it never heard, against the bar.

    Returns
    -------
    dict
        ``accuracy``, ``trusted_accuracy``, ``holdout_takes``, ``reliable``
        and, when not reliable, ``warning``: one sentence saying that the
        generated-clip figures cannot be trusted, and why.
    """
    out = {
        "accuracy": test_accuracy,
        "trusted_accuracy": trusted_accuracy,
        "holdout_takes": holdout_takes,
        "reliable": bool(test_accuracy >= trusted_accuracy),
    }
    if not out["reliable"]:
        out["warning"] = (
            f"UNRELIABLE: the digit judge is right on only {percent(test_accuracy)} of real recordings "
            f"it never heard (below the {percent(trusted_accuracy)} it needs), so the generated clips' "
            "accuracy, inception score and Fréchet distance do not say how recognisable they are"
        )
    return out


def flattery(name: str, *, generated: float | None, real: float | None, clips: str = "generated clips") -> dict:
    """The sanity rule: a judge that hears generated clips better than real recordings flatters the generator.

    Parameters
    ----------
    name : str
        The judge, as the warning names it.
    generated, real : float or None
        Its accuracy on the generated clips (or the VAE's other clips, ``clips``: the test clips converted
        to other digits) and on the test speakers' real recordings that it never heard.

    Returns
    -------
    dict
        ``flatters`` and, when it does, ``warning``: one plain sentence.
    """
    flatters = generated is not None and real is not None and generated > real
    out = {"flatters": bool(flatters)}
    if flatters:
        out["warning"] = (
            f"FLATTERS: the {name} hears the {clips} better ({percent(generated)}) than real recordings "
            f"of the test speakers ({percent(real)}), so its figures say how typical the clips are in its own "
            "feature space, not how well a listener would hear them"
        )
    return out


def f0_range(pitch: np.ndarray, *, low: float = 1, high: float = 99) -> list[float]:
    """The ``low``-th and ``high``-th percentiles of the f0 (Hz) of every voiced frame of normalised pitch tracks."""
    tracks = from_unit(pitch)
    f0 = tracks[:, F0][tracks[:, VOICING] > 0.5]
    return [float(v) for v in np.percentile(f0, [low, high])] if f0.size else []


def evaluate_model(
    *,
    generated_dir: Path,
    classifier_dir: Path,
    mfcc_judge_dir: Path,
    normalized_dir: Path,
    model_dir: Path,
    raw_dir: Path,
    listen_dir: Path,
    generate: GenerateParams,
    evaluate: EvaluateParams,
    seed: int,
) -> dict:
    """Judge the generated clips and the references, measure how they sound; write the listening page.

    Parameters
    ----------
    generated_dir, classifier_dir, mfcc_judge_dir, normalized_dir, model_dir, raw_dir : Path
        Outputs of the generate, classify, mfcc_judge, normalize, train and download stages.
    listen_dir : Path
        Written atomically: ``index.html``, the clips and mel images it shows,
        and ``verdicts.json`` (every clip's verdicts and measures).
    generate : GenerateParams
        The vocoder's settings (for the references).
    evaluate : EvaluateParams
        ``reference_clips``, how many real test clips to resynthesise,
        ``voice_clips``, how many of them to say as every digit,
        ``voice_takes``, how many takes of a test speaker make one voice that
        says every digit (:func:`take_groups`), and ``trusted_judge_accuracy``, the judge's accuracy on held-out takes
        below which its figures are flagged unreliable.
    seed : int
        The pipeline's seed.

    Returns
    -------
    dict
        The metrics: ``judge`` (:func:`judge_reliability`), ``judges`` (per
        judge: its own accuracy, its accuracy on the test speakers' unheard
        recordings and on the generated clips, and :func:`flattery`),
        ``generated`` (``accuracy``, the lower of the two judges',
        ``accuracy_mel``, ``accuracy_mfcc``, the mel judge's
        ``inception_score``, ``mean_confidence``, ``class_histogram`` and
        ``frechet_distance`` to the real test clips, ``sound``:
        :func:`speakdigits.quality.summarize`, and ``f0_in_range``), ``real``
        (the test speakers' unheard takes), ``vocoder_ceiling``, ``vae``,
        ``novelty`` (:func:`speakdigits.novelty.novelty`) and ``training_f0``.
    """
    mel = read_geometry(model_dir)
    mel_min, mel_max = load_stats(normalized_dir)
    judge = Judge.load(classifier_dir, mel=mel, mel_min=mel_min, mel_max=mel_max)
    second = MfccJudge.load(mfcc_judge_dir)
    info = read_classifiers_info(classifier_dir)
    holdout_takes = info["holdout_takes"]
    reliability = judge_reliability(
        info["tasks"]["digit"]["test_accuracy"],
        holdout_takes=holdout_takes,
        trusted_accuracy=evaluate.trusted_judge_accuracy,
    )
    records = read_generated(generated_dir)
    requested = [r["digit"] for r in records]
    conditional = any(d is not None for d in requested)
    test = load_split(normalized_dir, "test")
    test_unheard = unheard(test, holdout_takes=holdout_takes)
    candidates = reference_candidates(raw_dir, test_unheard, rng=stream(seed, Stream.REFERENCES))
    vae = load_vae(model_dir)
    latents = read_latents(model_dir)
    refs = references(
        judge,
        vae,
        latents,
        raw_dir,
        candidates,
        count=evaluate.reference_clips,
        voice_clips=evaluate.voice_clips,
        mel=mel,
        generate=generate,
        seed=seed,
    )
    making = dict(mel=mel, mel_min=mel_min, mel_max=mel_max, generate=generate)
    # The voices: the first voice_clips references, said as every digit (references), a walk between two of
    # them, and the training speakers' voices saying every digit.
    sources = refs[: evaluate.voice_clips]
    interpolated = interpolation(vae, latents, sources, seed=seed, **making)
    known = known_voices(vae, latents, read_speakers(model_dir), seed=seed, **making) if sources else None
    groups = take_groups(test_unheard, evaluate.voice_takes, rng=stream(seed, Stream.TAKE_VOICES))
    from_takes = take_voices(vae, latents, test_unheard, groups, seed=seed, **making) if sources else None
    without_voice = voiceless(vae, latents, seed=seed, **making) if sources else None
    ref_digits = [r["digit"] for r in refs]
    sets = judge_sets(
        judge,
        second,
        {"generated": ([r["wav"] for r in records], requested)}
        | {kind: ([r[kind] for r in refs], ref_digits) for kind, _ in REFERENCE_KINDS},
        {kind: [r["real"] for r in refs] for kind in ("vocoder", "vae")},
    )
    gen = sets["generated"]
    real, real_embeddings = real_metrics(
        judge,
        second,
        test_unheard,
        unheard(load_split(normalized_dir, "val"), holdout_takes=holdout_takes),
        raw_dir=raw_dir,
        candidates=candidates,
        generated_count=len(gen.mel.judged),
        seed=seed,
    )
    real["sound"] = summarize(sets["real"].sound)
    train = load_split(normalized_dir, "train")
    training_f0 = f0_range(train["pitch"])
    generated = generated_metrics(
        gen, conditional=conditional, real_embeddings=real_embeddings, training_f0=training_f0
    )
    test_rebuilt = rebuild(vae, test)
    yardstick = digits_evenly(test["digit"], NOVELTY_REFERENCE_CLIPS, rng=stream(seed, Stream.NOVELTY_YARDSTICK))
    mfcc_accuracy = read_judge_info(mfcc_judge_dir)["test_accuracy"]
    metrics = {
        "judge": reliability,
        "judges": judges_table(reliability, real, generated, mfcc_accuracy=mfcc_accuracy),
        "generated": generated,
        "real": real,
        "vocoder_ceiling": ceiling_metrics(sets, clips=len(refs)),
        "vae": vae_metrics(judge, test, test_rebuilt, sets, clips=len(refs)),
        "novelty": novelty(
            read_generated_mels(generated_dir, len(records)),
            test_rebuilt[yardstick],
            np.concatenate([train["x"], rebuild(vae, train)]),
        ),
        "training_f0": training_f0,
    }

    reference_heard = {
        kind: sets[kind].heard(
            names=[f"{i:03d}_{ref['digit']}_{kind}" for i, ref in enumerate(refs)],
            titles=[title or Path(ref["member"]).name for ref in refs],
        )
        for kind, title in REFERENCE_KINDS
    }
    metrics["voices"], voice_rows = judge_voices(
        sources,
        interpolated,
        known,
        from_takes,
        test,
        without_voice=without_voice,
        judge=judge,
        second=second,
        classifier_dir=classifier_dir,
        mfcc_judge_dir=mfcc_judge_dir,
        reference_heard=reference_heard,
    )
    metrics["voices"] |= conversion_judges(metrics["voices"], real)
    metrics["voices"]["latent_map"], drawn = latent_space(vae, test)  # cheap, and a DVC plot: always drawn
    write_page(
        listen_dir,
        metrics=metrics,
        judge=judge,
        generated=gen.heard(names=[r["file"][:-4] for r in records], titles=[r["file"] for r in records]),
        references=[[reference_heard[kind][i] for kind, _ in REFERENCE_KINDS] for i in range(len(refs))],
        voices=voice_rows,
        latent_map=drawn,
    )
    return metrics


def real_metrics(
    judge: Judge,
    second: MfccJudge,
    test_unheard: dict,
    val_unheard: dict,
    *,
    raw_dir: Path,
    candidates: list[tuple[str, int]],
    generated_count: int,
    seed: int,
) -> tuple[dict, np.ndarray]:
    """Both judges on every real take of the test speakers that they never heard: the ceiling for any
    generator. The digit judge's :func:`summary`, ``accuracy_mfcc`` and the Fréchet distance that real
    validation clips score (:func:`real_frechet_floor`, as many as ``generated_count``); and the digit
    judge's embeddings of the test takes, for the generated clips' Fréchet distance."""
    probs, embeddings = judge.images(test_unheard["x"])
    out = summary(probs, test_unheard["digit"])
    with zipfile.ZipFile(Path(raw_dir) / raw.AUDIO_ZIP) as archive:
        wavs = [archive.read(member) for member, _ in candidates]
    mfcc = second.wavs(wavs).accuracy([digit for _, digit in candidates])
    if mfcc is not None:
        out["accuracy_mfcc"] = mfcc
    floor = real_frechet_floor(judge, val_unheard, embeddings, count=generated_count, seed=seed)
    if floor is not None:
        out["frechet_distance"] = floor
    return out, embeddings


def write_page(
    listen_dir: Path,
    *,
    metrics: dict,
    judge: Judge,
    generated: list,
    references: list,
    voices: list,
    latent_map: tuple | None,
) -> None:
    """The listening page (:func:`speakdigits.listening.write_listening_page`) and the latent map's PNG
    (``latent_map``: :func:`speakdigits.voices.save_latent_map`'s arguments, or None), written whole."""
    with atomic_dir(listen_dir) as tmp:
        if latent_map is not None:
            save_latent_map(tmp / LATENT_MAP_PNG, *latent_map)
        write_listening_page(
            tmp,
            metrics=metrics,
            classes=judge.classes,
            mel_range=(float(judge.mel_min.min()), float(judge.mel_max.max())),
            generated=generated,
            references=references,
            voices=voices,
            latent_map=LATENT_MAP_PNG if latent_map is not None else None,
        )


def generated_metrics(
    gen: JudgedSet, *, conditional: bool, real_embeddings: np.ndarray, training_f0: list[float]
) -> dict:
    """The generated clips' figures: the digit judge's :func:`summary` and ``class_histogram``,
    ``unjudgeable``, ``conditional``, both judges' accuracies and the lower of the two (``accuracy``), the
    Fréchet distance to the real test clips, ``sound`` and ``f0_in_range`` (the share of voiced frames
    within the training clips' f0 range)."""
    out = summary(gen.mel.probs)
    if len(gen.mel.probs):  # what the judge heard, by class: shows a generator stuck on a few digits
        out["class_histogram"] = {str(i): n for i, n in enumerate(class_histogram(gen.mel.probs))}
    out.update(clips=len(gen.wavs), unjudgeable=len(gen.wavs) - len(gen.mel.judged), conditional=conditional)
    if conditional:
        out["accuracy_mel"], out["accuracy_mfcc"] = gen.accuracy("mel"), gen.accuracy("mfcc")
        out["accuracy"] = min(out["accuracy_mel"], out["accuracy_mfcc"])
    if len(gen.mel.judged) and len(real_embeddings):
        out["frechet_distance"] = frechet_distance(gen.mel.embeddings, real_embeddings)
    out["sound"] = summarize(gen.sound)
    f0 = np.concatenate([m["f0"] for m in gen.sound if "f0" in m] or [np.zeros(0)])
    if training_f0 and len(f0):
        out["f0_in_range"] = float(np.mean((f0 >= training_f0[0]) & (f0 <= training_f0[1])))
    return out


def ceiling_metrics(sets: dict[str, JudgedSet], *, clips: int) -> dict:
    """The vocoder ceiling: how the references rebuilt from their own features sound, and both judges on
    them beside the same real clips."""
    out = {"clips": clips, "sound": summarize(sets["vocoder"].sound)}
    if clips:
        out |= {
            "accuracy": sets["vocoder"].accuracy("mel"),
            "accuracy_mfcc": sets["vocoder"].accuracy("mfcc"),
            "real_accuracy_same_clips": sets["real"].accuracy("mel"),
            "real_accuracy_mfcc_same_clips": sets["real"].accuracy("mfcc"),
        }
    return out


def vae_metrics(judge: Judge, test: dict, rebuilt: np.ndarray, sets: dict[str, JudgedSet], *, clips: int) -> dict:
    """The VAE's reconstructions: :func:`vae_reconstruction` of every test clip, and the references'
    reconstructions heard as audio."""
    out = vae_reconstruction(judge, test, rebuilt)
    out["sound"] = summarize(sets["vae"].sound)
    if clips:
        out["judge_accuracy_resynthesised"] = sets["vae"].accuracy("mel")
        out["mfcc_judge_accuracy_resynthesised"] = sets["vae"].accuracy("mfcc")
    return out


def conversion_judges(voices: dict, real: dict) -> dict:
    """Per digit judge, :func:`flattery` on the test clips converted to other digits: heard better than the
    test speakers' own recordings, they flatter the conversions as they can the generated clips. Empty where
    nothing was converted."""
    if "converted" not in voices:
        return {}
    return {
        "judges": {
            "mel": flattery(
                "digit judge (the pipeline's log-mel)",
                generated=voices["converted_mel"],
                real=real.get("accuracy"),
                clips="converted clips",
            ),
            "mfcc": flattery(
                "MFCC judge",
                generated=voices["converted_mfcc"],
                real=real.get("accuracy_mfcc"),
                clips="converted clips",
            ),
        }
    }


def judges_table(reliability: dict, real: dict, generated: dict, *, mfcc_accuracy: float) -> dict:
    """Per judge: its own accuracy (held-out takes), on the test speakers' unheard recordings and on the
    generated clips, and :func:`flattery`."""
    return {
        "mel": {
            "accuracy": reliability["accuracy"],
            "real": real.get("accuracy"),
            "generated": generated.get("accuracy_mel"),
            **flattery(
                "digit judge (the pipeline's log-mel)",
                generated=generated.get("accuracy_mel"),
                real=real.get("accuracy"),
            ),
        },
        "mfcc": {
            "accuracy": mfcc_accuracy,
            "real": real.get("accuracy_mfcc"),
            "generated": generated.get("accuracy_mfcc"),
            **flattery("MFCC judge", generated=generated.get("accuracy_mfcc"), real=real.get("accuracy_mfcc")),
        },
    }
