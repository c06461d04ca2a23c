"""The ``evaluate`` stage: how good are the generated voices, judged by the digit classifier.

A judge is only as good as its own accuracy, so that comes first: the digit
classifier's accuracy on real recordings it never heard (held-out takes, see
:mod:`speakdigits.classifier`). Below ``evaluate.trusted_judge_accuracy`` the
metrics and the listening page say plainly that the generated-clip figures are
unreliable.

Everything the judge hears is audio, re-extracted through the same mel
pipeline as the training data:

- the generated wav files (data/generated);
- real clips of the test speakers that the judge never heard (their held-out
  takes), as recorded (the clean reference), and the same clips passed
  through mel → Griffin-Lim → audio with the pipeline's own settings (the
  *vocoder ceiling*: the best a perfect mel generator could score);
- the VAE's reconstructions of those clips, re-synthesised the same way.

The generated mels are also compared with the training clips
(:mod:`speakdigits.novelty`), to tell new voices from replayed ones.

Besides the metrics (``metrics/evaluate.json``) it writes the listening page,
``data/listen/index.html``, with every clip it judged.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from speakdigits.audio import BadClip, decode_wav, wav_bytes
from speakdigits.classifier import take_split
from speakdigits.files import atomic_dir
from speakdigits.formats import raw
from speakdigits.formats.classifiers import read_classifiers_info
from speakdigits.formats.generated import read_generated, read_generated_mels
from speakdigits.formats.model import load_vae
from speakdigits.formats.normalized import denormalize, load_split, load_stats
from speakdigits.judge import Judge, accuracy, frechet_distance, summary
from speakdigits.listening import Heard, percent, write_listening_page
from speakdigits.model import TrainedVAE
from speakdigits.novelty import novelty
from speakdigits.params import EvaluateParams, GenerateParams, MelParams
from speakdigits.vocoder import mel_to_audio

# Reconstructed clips of unheard speakers, the novelty yardstick: enough for a stable median and a
# 1 % quantile, few enough that the distances stay quick at AudioMNIST's size.
NOVELTY_REFERENCE_CLIPS = 500
#: The references' three versions of each clip, in the page's column order, and the title of the two made ones.
REFERENCE_KINDS = (("real", None), ("ceiling", "Griffin-Lim of its mel"), ("vae", "VAE reconstruction"))


def digits_in_turn(digits: np.ndarray, *, seed: int) -> np.ndarray:
    """Indices of ``digits`` ordered so that digits take turns: one clip of each digit, then a second of
    each, ...; within a digit the order is a shuffle drawn with ``seed``.

    Any prefix of the order then covers the digits evenly (the judge's embeddings cluster by digit, so
    an uneven draw alone would move a Fréchet distance or a median).
    """
    digits = np.asarray(digits)
    rng = np.random.default_rng(seed)
    queues = [np.flatnonzero(digits == d)[rng.permutation(int(np.sum(digits == d)))] for d in np.unique(digits)]
    longest = max((len(q) for q in queues), default=0)
    return np.array([q[turn] for turn in range(longest) for q in queues if turn < len(q)], dtype=np.int64)


def digits_evenly(digits: np.ndarray, count: int, *, seed) -> np.ndarray:
    """Indices of up to ``count`` of ``digits``, the digits in turn (:func:`digits_in_turn`), in ascending order."""
    return np.sort(digits_in_turn(digits, seed=seed)[:count])


def unheard(split: dict, *, holdout_takes: float) -> dict:
    """The clips of a split that the digit judge never heard: each speaker's held-out takes."""
    keep = take_split(split["speaker"], split["digit"], split["take"], fraction=holdout_takes) == "test"
    return {key: values[keep] for key, values in split.items()}


def reference_candidates(raw_dir: Path, clips: dict, *, seed: int) -> list[tuple[str, int]]:
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
    order = digits_in_turn(np.array([digit for _, digit in found]), seed=seed) if found else []
    return [found[i] for i in order]


def _resynthesise(mel_db: np.ndarray, *, mel: MelParams, generate: GenerateParams, seed: int) -> bytes:
    samples = mel_to_audio(
        mel_db, mel=mel, n_iter=generate.griffin_lim_iters, momentum=generate.griffin_lim_momentum, seed=seed
    )
    return wav_bytes(samples, mel.sample_rate)


def references(
    judge: Judge,
    vae: TrainedVAE,
    raw_dir: Path,
    clips: dict,
    *,
    count: int,
    mel: MelParams,
    generate: GenerateParams,
    seed: int,
) -> list[dict]:
    """Up to ``count`` real clips, each as recorded, through Griffin-Lim and through the VAE.

    The vocoder ceiling inverts the clip's mel as the pipeline represents it
    (scaled to [0, 1] and back, so clipped to the training range), with the
    generate stage's Griffin-Lim settings; the VAE version decodes the
    encoder's mean (z = μ) instead. Clips the extract stage would skip are
    skipped here too.

    Parameters
    ----------
    judge : Judge
        Makes the mels (and holds the scaling statistics).
    vae : TrainedVAE
        The trained model.
    raw_dir : Path
        Output of the download stage.
    clips : dict
        Which clips may serve (a split's arrays: the test speakers' unheard
        takes).
    count : int
        How many clips (``evaluate.reference_clips``).
    mel, generate : MelParams, GenerateParams
        Sections of params.yaml (mel settings, Griffin-Lim settings).
    seed : int
        Seed of the choice of clips and of Griffin-Lim's initial phases.

    Returns
    -------
    list of dict
        Per clip: ``member``, ``digit``, and ``real``, ``ceiling``, ``vae``
        wav bytes.
    """
    chosen = []
    with zipfile.ZipFile(Path(raw_dir) / raw.AUDIO_ZIP) as archive:
        for member, digit in reference_candidates(raw_dir, clips, seed=[seed, 5]):
            if len(chosen) == count:
                break
            data = archive.read(member)
            try:
                mel_db = judge.mel_db(data)
                samples, rate = decode_wav(data)
            except BadClip:
                continue
            chosen.append(
                {
                    "member": member,
                    "digit": digit,
                    "real": wav_bytes(samples, rate),
                    "image": judge.scaled(mel_db[None])[0],
                }
            )
    if not chosen:
        return []
    images = np.stack([c["image"] for c in chosen])
    rebuilt = vae.reconstruct(images, np.array([c["digit"] for c in chosen]))
    ceiling_db = denormalize(images, judge.mel_min, judge.mel_max)
    vae_db = denormalize(rebuilt, judge.mel_min, judge.mel_max)
    for index, clip in enumerate(chosen):
        clip["ceiling"] = _resynthesise(ceiling_db[index], mel=mel, generate=generate, seed=seed + index)
        clip["vae"] = _resynthesise(vae_db[index], mel=mel, generate=generate, seed=seed + index)
        del clip["image"]
    return chosen


def rebuild(vae: TrainedVAE, split: dict) -> np.ndarray:
    """The VAE's reconstructions (z = μ, clipped) of every clip of a split."""
    if len(split["x"]) == 0:
        return np.zeros_like(split["x"])
    return vae.reconstruct(split["x"], split["digit"])


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
    pick = digits_evenly(val["digit"], count, seed=[seed, 6])
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


def _verdicts(result: dict, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per clip of a :meth:`Judge.wavs` result: the verdict (-1 when unjudgeable) and its confidence (0)."""
    verdicts, confidence = np.full(count, -1), np.zeros(count)
    verdicts[result["judged"]] = result["probs"].argmax(axis=1)
    confidence[result["judged"]] = result["probs"].max(axis=1)
    return verdicts, confidence


def heard(
    result: dict, *, names: list[str], titles: list[str], wavs: list[bytes], expected: list[int | None]
) -> list[Heard]:
    """Every clip of a :meth:`Judge.wavs` result, as the listening page shows it."""
    verdicts, confidence = _verdicts(result, len(result["mels_db"]))
    return [
        Heard(
            name=name,
            title=title,
            wav=wav,
            mel_db=result["mels_db"][index],
            expected=want,
            verdict=int(verdicts[index]) if verdicts[index] >= 0 else None,
            confidence=float(confidence[index]) if verdicts[index] >= 0 else None,
            problem=result["problems"][index],
        )
        for index, (name, title, wav, want) in enumerate(zip(names, titles, wavs, expected))
    ]


def _judged_summary(result: dict, expected: list[int] | None, count: int) -> dict:
    """:func:`summary` of the judged clips; accuracy over every clip, an unjudgeable one counting as wrong."""
    out = summary(result["probs"])
    out.pop("class_histogram", None)
    out["clips"] = count
    if expected is not None and count:
        out["accuracy"] = float(np.mean(_verdicts(result, count)[0] == np.asarray(expected)))
    return out


def evaluate(
    *,
    generated_dir: Path,
    classifier_dir: Path,
    normalized_dir: Path,
    model_dir: Path,
    raw_dir: Path,
    listen_dir: Path,
    mel: MelParams,
    generate: GenerateParams,
    evaluate: EvaluateParams,
    seed: int,
) -> dict:
    """Judge the generated clips and the references; write the listening page.

    Parameters
    ----------
    generated_dir, classifier_dir, normalized_dir, model_dir, raw_dir : Path
        Outputs of the generate, classify, normalize, train and download stages.
    listen_dir : Path
        Written atomically: ``index.html``, the clips and mel images it shows,
        and ``verdicts.json`` (every clip's verdict).
    mel, generate : MelParams, GenerateParams
        Sections of params.yaml (the mel settings, the Griffin-Lim settings).
    evaluate : EvaluateParams
        ``reference_clips``, how many real test clips to resynthesise, and
        ``trusted_judge_accuracy``, the judge's accuracy on held-out takes
        below which its figures are flagged unreliable.
    seed : int
        The pipeline's seed.

    Returns
    -------
    dict
        The metrics: ``judge`` (:func:`judge_reliability`), ``generated``
        (``accuracy`` for a conditional model, ``inception_score``,
        ``mean_confidence``, ``class_histogram``, ``frechet_distance`` to the
        real test clips), ``real`` (the test speakers' unheard takes; its
        ``frechet_distance`` is :func:`real_frechet_floor`),
        ``vocoder_ceiling``, ``vae`` and ``novelty``
        (:func:`speakdigits.novelty.novelty`).
    """
    mel_min, mel_max = load_stats(normalized_dir)
    judge = Judge.load(classifier_dir, mel=mel, mel_min=mel_min, mel_max=mel_max)
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
    gen = judge.wavs([r["wav"] for r in records])
    test = load_split(normalized_dir, "test")
    test_unheard = unheard(test, holdout_takes=holdout_takes)
    real_probs, real_embeddings = judge.images(test_unheard["x"])
    vae = load_vae(model_dir)
    refs = references(
        judge, vae, raw_dir, test_unheard, count=evaluate.reference_clips, mel=mel, generate=generate, seed=seed
    )
    ref_digits = [r["digit"] for r in refs]
    judged_refs = {kind: judge.wavs([r[kind] for r in refs]) for kind, _ in REFERENCE_KINDS}

    generated = summary(gen["probs"])
    generated.update(clips=len(records), unjudgeable=len(records) - len(gen["judged"]), conditional=conditional)
    if conditional:
        generated["accuracy"] = _judged_summary(gen, requested, len(records))["accuracy"]
    if len(gen["judged"]) and len(real_embeddings):
        generated["frechet_distance"] = frechet_distance(gen["embeddings"], real_embeddings)
    real = summary(real_probs, test_unheard["digit"])
    real.pop("class_histogram", None)
    real_fd = real_frechet_floor(
        judge,
        unheard(load_split(normalized_dir, "val"), holdout_takes=holdout_takes),
        real_embeddings,
        count=len(gen["judged"]),
        seed=seed,
    )
    if real_fd is not None:
        real["frechet_distance"] = real_fd
    ceiling = _judged_summary(judged_refs["ceiling"], ref_digits, len(refs))
    if refs:
        ceiling["real_accuracy_same_clips"] = _judged_summary(judged_refs["real"], ref_digits, len(refs))["accuracy"]
    test_rebuilt = rebuild(vae, test)
    vae_metrics = vae_reconstruction(judge, test, test_rebuilt)
    if refs:
        vae_metrics["judge_accuracy_resynthesised"] = _judged_summary(judged_refs["vae"], ref_digits, len(refs))[
            "accuracy"
        ]
    train = load_split(normalized_dir, "train")
    yardstick = digits_evenly(test["digit"], NOVELTY_REFERENCE_CLIPS, seed=[seed, 7])
    novel = novelty(
        read_generated_mels(generated_dir, len(records)),
        test_rebuilt[yardstick],
        np.concatenate([train["x"], rebuild(vae, train)]),
    )
    metrics = {
        "judge": reliability,
        "generated": generated,
        "real": real,
        "vocoder_ceiling": ceiling,
        "vae": vae_metrics,
        "novelty": novel,
    }

    heard_refs = {
        kind: heard(
            judged_refs[kind],
            names=[f"{i:03d}_{ref['digit']}_{kind}" for i, ref in enumerate(refs)],
            titles=[title or Path(ref["member"]).name for ref in refs],
            wavs=[ref[kind] for ref in refs],
            expected=ref_digits,
        )
        for kind, title in REFERENCE_KINDS
    }
    reference_rows = [
        (ref["digit"], [heard_refs[kind][i] for kind, _ in REFERENCE_KINDS])
        for i, ref in sorted(enumerate(refs), key=lambda item: (item[1]["digit"], item[0]))
    ]
    with atomic_dir(listen_dir) as tmp:
        write_listening_page(
            tmp,
            metrics=metrics,
            classes=judge.classes,
            mel_range=(float(judge.mel_min.min()), float(judge.mel_max.max())),
            generated=heard(
                gen,
                names=[r["file"][:-4] for r in records],
                titles=[r["file"] for r in records],
                wavs=[r["wav"] for r in records],
                expected=requested,
            ),
            references=reference_rows,
        )
    return metrics
