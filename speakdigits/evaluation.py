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

import json
import zipfile
from pathlib import Path

import numpy as np

from speakdigits import listening, raw
from speakdigits.audio import BadClip, decode_wav, wav_bytes
from speakdigits.classifier import read_classifiers_info
from speakdigits.errors import PipelineError
from speakdigits.files import atomic_dir, read_stage_json
from speakdigits.generation import MELS_NPY, SAMPLES_JSON
from speakdigits.judge import Judge, accuracy, frechet_distance, summary
from speakdigits.model import load_halves, read_model_info, reconstruct
from speakdigits.normalize import denormalize, load_split, load_stats, take_split
from speakdigits.novelty import novelty
from speakdigits.vocoder import mel_to_audio

# Where the page's files go, relative to it.
GENERATED_SUBDIR = "generated"
REFERENCE_SUBDIR = "reference"
VERDICTS_JSON = "verdicts.json"

# Reconstructed clips of unheard speakers, the novelty yardstick: enough for a stable median and a
# 1 % quantile, few enough that the distances stay quick at AudioMNIST's size.
NOVELTY_REFERENCE_CLIPS = 500

PAGE_INTRO = [
    "Every clip below was judged by the digit classifier of the classify stage, from its audio: the wav file "
    "is turned into a log-mel image exactly as the training clips were. The image above each player is that "
    "mel; the caption gives the judge's verdict and its confidence (✓ when it is the digit asked for).",
    "For scale: DiffWave (ICLR 2021) reached 91.2 % accuracy and inception score 6.63 on class-conditional "
    "spoken digits, where real test clips scored 98.76 % and 8.47; the original student VAE was about 80 % "
    "recognisable by ear on 20 samples.",
]


def read_generated(generated_dir: Path) -> list[dict]:
    """The generate stage's clip records (``file``, ``digit`` or None), with each file's bytes as ``wav``."""
    path = Path(generated_dir) / SAMPLES_JSON
    records = read_stage_json(path, "generate")
    for record in records:
        try:
            record["wav"] = (Path(generated_dir) / record["file"]).read_bytes()
        except FileNotFoundError:
            raise PipelineError(f"{Path(generated_dir) / record['file']}: listed in {path} but missing; "
                                "rerun the generate stage (dvc repro -f generate)") from None
    return records


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


def unheard(split: dict, *, holdout_takes: float) -> dict:
    """The clips of a split that the digit judge never heard: each speaker's held-out takes."""
    keep = take_split(split["speaker"], split["digit"], split["take"], fraction=holdout_takes) == "test"
    return {key: values[keep] for key, values in split.items()}


def read_generated_mels(generated_dir: Path, count: int) -> np.ndarray:
    """The decoder's images of the generated clips (``mels.npy``), one per clip of ``samples.json``."""
    path = Path(generated_dir) / MELS_NPY
    try:
        mels = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; rerun the generate stage (dvc repro -f generate)") from None
    if len(mels) != count:
        raise PipelineError(f"{path}: {len(mels)} images for {count} clips in {SAMPLES_JSON}; "
                            "rerun the generate stage (dvc repro -f generate)")
    return mels


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


def _resynthesise(mel_db: np.ndarray, *, mel: dict, generate: dict, seed: int) -> bytes:
    samples = mel_to_audio(mel_db, mel=mel, n_iter=generate["griffin_lim_iters"],
                           momentum=generate["griffin_lim_momentum"], seed=seed)
    return wav_bytes(samples, mel["sample_rate"])


def references(judge: Judge, vae: tuple, raw_dir: Path, clips: dict, *, count: int, mel: dict,
               generate: dict, seed: int) -> list[dict]:
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
    vae : (dict, keras.Model, keras.Model)
        The model's info, encoder and decoder (:func:`load_vae`).
    raw_dir : Path
        Output of the download stage.
    clips : dict
        Which clips may serve (a split's arrays: the test speakers' unheard
        takes).
    count : int
        How many clips (``evaluate.reference_clips``).
    mel, generate : dict
        Sections of params.yaml (mel settings, Griffin-Lim settings).
    seed : int
        Seed of the choice of clips and of Griffin-Lim's initial phases.

    Returns
    -------
    list of dict
        Per clip: ``member``, ``digit``, and ``real``, ``ceiling``, ``vae``
        wav bytes.
    """
    info, encoder, decoder = vae
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
            chosen.append({"member": member, "digit": digit, "real": wav_bytes(samples, rate),
                           "image": judge.scaled(mel_db[None])[0]})
    if not chosen:
        return []
    images = np.stack([c["image"] for c in chosen])
    rebuilt = reconstruct(encoder, decoder, images, np.array([c["digit"] for c in chosen]),
                          conditional=info["conditional"])
    ceiling_db = denormalize(images, judge.mel_min, judge.mel_max)
    vae_db = denormalize(rebuilt, judge.mel_min, judge.mel_max)
    for index, clip in enumerate(chosen):
        clip["ceiling"] = _resynthesise(ceiling_db[index], mel=mel, generate=generate, seed=seed + index)
        clip["vae"] = _resynthesise(vae_db[index], mel=mel, generate=generate, seed=seed + index)
        del clip["image"]
    return chosen


def load_vae(model_dir: Path) -> tuple:
    """The trained VAE as ``(info, encoder, decoder)``."""
    return (read_model_info(model_dir), *load_halves(model_dir))


def rebuild(vae: tuple, split: dict) -> np.ndarray:
    """The VAE's reconstructions (z = μ, clipped) of every clip of a split."""
    info, encoder, decoder = vae
    if len(split["x"]) == 0:
        return np.zeros_like(split["x"])
    return reconstruct(encoder, decoder, split["x"], split["digit"], conditional=info["conditional"])


def vae_reconstruction(judge: Judge, test: dict, rebuilt: np.ndarray) -> dict:
    """The VAE on every test clip, from its reconstructions (:func:`rebuild`): mean squared error
    (normalised units, as the train stage reports it, but clipped to [0, 1] as generation does) and the
    judge's accuracy on the reconstructed mels themselves (no audio)."""
    if len(test["x"]) == 0:
        return {}
    probs, _ = judge.images(rebuilt)
    return {"reconstruction_mse": float(np.mean((rebuilt - test["x"]) ** 2)),
            "judge_accuracy_mel": accuracy(probs, test["digit"])}


def real_frechet_floor(judge: Judge, val: dict, test_embeddings: np.ndarray, *, count: int,
                       seed: int) -> float | None:
    """Fréchet distance from up to ``count`` real validation clips to the real test clips.

    What a generator as good as real speech would score: other speakers than
    the test ones, as many clips as were generated where there are that many
    (the estimate grows as the sample shrinks) and, like the generated set,
    the digits in turn. None when there are no such clips.
    """
    if count == 0 or len(val["x"]) == 0 or len(test_embeddings) == 0:
        return None
    pick = digits_in_turn(val["digit"], seed=[seed, 6])[:count]
    return frechet_distance(judge.images(val["x"][np.sort(pick)])[1], test_embeddings)


def judge_reliability(test_accuracy: float, *, holdout_takes: float, trusted_accuracy: float) -> dict:
    """What the judge's verdicts are worth: its accuracy on real takes it never heard, against the bar.

    Returns
    -------
    dict
        ``accuracy``, ``trusted_accuracy``, ``holdout_takes``, ``reliable``
        and, when not reliable, ``warning``: one sentence saying that the
        generated-clip figures cannot be trusted, and why.
    """
    out = {"accuracy": test_accuracy, "trusted_accuracy": trusted_accuracy, "holdout_takes": holdout_takes,
           "reliable": bool(test_accuracy >= trusted_accuracy)}
    if not out["reliable"]:
        out["warning"] = (f"UNRELIABLE: the digit judge is right on only {_percent(test_accuracy)} of real recordings "
                          f"it never heard (below the {_percent(trusted_accuracy)} it needs), so the generated clips' "
                          "accuracy, inception score and Fréchet distance do not say how recognisable they are")
    return out


def _verdicts(result: dict, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per clip of a :meth:`Judge.wavs` result: the verdict (-1 when unjudgeable) and its confidence (0)."""
    verdicts, confidence = np.full(count, -1), np.zeros(count)
    verdicts[result["judged"]] = result["probs"].argmax(axis=1)
    confidence[result["judged"]] = result["probs"].max(axis=1)
    return verdicts, confidence


def _judged_summary(result: dict, expected: list[int] | None, count: int) -> dict:
    """:func:`summary` of the judged clips; accuracy over every clip, an unjudgeable one counting as wrong."""
    out = summary(result["probs"])
    out.pop("class_histogram", None)
    out["clips"] = count
    if expected is not None and count:
        out["accuracy"] = float(np.mean(_verdicts(result, count)[0] == np.asarray(expected)))
    return out


def evaluate(*, generated_dir: Path, classifier_dir: Path, normalized_dir: Path, model_dir: Path, raw_dir: Path,
             listen_dir: Path, mel: dict, generate: dict, reference_clips: int, trusted_judge_accuracy: float,
             seed: int) -> dict:
    """Judge the generated clips and the references; write the listening page.

    Parameters
    ----------
    generated_dir, classifier_dir, normalized_dir, model_dir, raw_dir : Path
        Outputs of the generate, classify, normalize, train and download stages.
    listen_dir : Path
        Written atomically: ``index.html``, the clips and mel images it shows,
        and ``verdicts.json`` (every clip's verdict).
    mel, generate : dict
        Sections of params.yaml.
    reference_clips : int
        How many real test clips to resynthesise (``evaluate.reference_clips``).
    trusted_judge_accuracy : float
        The judge's accuracy on held-out takes below which its figures are
        flagged unreliable (``evaluate.trusted_judge_accuracy``).
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
    reliability = judge_reliability(info["tasks"]["digit"]["test_accuracy"], holdout_takes=holdout_takes,
                                    trusted_accuracy=trusted_judge_accuracy)
    records = read_generated(generated_dir)
    requested = [r["digit"] for r in records]
    conditional = any(d is not None for d in requested)
    gen = judge.wavs([r["wav"] for r in records])
    test = load_split(normalized_dir, "test")
    test_unheard = unheard(test, holdout_takes=holdout_takes)
    real_probs, real_embeddings = judge.images(test_unheard["x"])
    vae = load_vae(model_dir)
    refs = references(judge, vae, raw_dir, test_unheard, count=reference_clips, mel=mel, generate=generate,
                      seed=seed)
    ref_digits = [r["digit"] for r in refs]
    judged_refs = {kind: judge.wavs([r[kind] for r in refs]) for kind in ("real", "ceiling", "vae")}

    generated = summary(gen["probs"])
    generated.update(clips=len(records), unjudgeable=len(records) - len(gen["judged"]), conditional=conditional)
    if conditional:
        generated["accuracy"] = _judged_summary(gen, requested, len(records))["accuracy"]
    if len(gen["judged"]) and len(real_embeddings):
        generated["frechet_distance"] = frechet_distance(gen["embeddings"], real_embeddings)
    real = summary(real_probs, test_unheard["digit"])
    real.pop("class_histogram", None)
    real_fd = real_frechet_floor(judge, unheard(load_split(normalized_dir, "val"), holdout_takes=holdout_takes),
                                 real_embeddings, count=len(gen["judged"]), seed=seed)
    if real_fd is not None:
        real["frechet_distance"] = real_fd
    ceiling = _judged_summary(judged_refs["ceiling"], ref_digits, len(refs))
    if refs:
        ceiling["real_accuracy_same_clips"] = _judged_summary(judged_refs["real"], ref_digits, len(refs))["accuracy"]
    test_rebuilt = rebuild(vae, test)
    vae_metrics = vae_reconstruction(judge, test, test_rebuilt)
    if refs:
        vae_metrics["judge_accuracy_resynthesised"] = _judged_summary(judged_refs["vae"], ref_digits,
                                                                      len(refs))["accuracy"]
    train = load_split(normalized_dir, "train")
    yardstick = np.sort(digits_in_turn(test["digit"], seed=[seed, 7])[:NOVELTY_REFERENCE_CLIPS])
    novel = novelty(read_generated_mels(generated_dir, len(records)), test_rebuilt[yardstick],
                    np.concatenate([train["x"], rebuild(vae, train)]))
    metrics = {"judge": reliability, "generated": generated, "real": real, "vocoder_ceiling": ceiling,
               "vae": vae_metrics, "novelty": novel}

    with atomic_dir(listen_dir) as tmp:
        write_listening_page(tmp, judge, records, gen, refs, judged_refs, metrics)
    return metrics


def _percent(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f} %"


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}g}"


def headline(metrics: dict) -> list[tuple[str, str]]:
    """The page's metric table: ``(name, formatted value)`` rows."""
    gen, real, ceiling, vae = (metrics[k] for k in ("generated", "real", "vocoder_ceiling", "vae"))
    judge, novel = metrics["judge"], metrics["novelty"]
    rows = [("The judge itself: accuracy on real takes it never heard (every speaker)",
             _percent(judge["accuracy"]) + (" — trusted" if judge["reliable"] else
                                            f" — UNRELIABLE (needs {_percent(judge['trusted_accuracy'])})"))]
    if gen["conditional"]:
        rows.append(("Generated: share that says the digit asked for", _percent(gen.get("accuracy"))))
    rows += [
        ("Generated: inception score (10 at most)", _number(gen.get("inception_score"))),
        ("Generated: mean judge confidence", _percent(gen.get("mean_confidence"))),
        ("Generated: Fréchet distance to real test clips (judge embeddings)",
         _number(gen.get("frechet_distance")) + f" (as many real clips of other speakers: "
                                                f"{_number(real.get('frechet_distance'))})"),
        ("Generated: judge's verdicts, digit: count",
         ", ".join(f"{d}: {n}" for d, n in gen.get("class_histogram", {}).items()) or "–"),
        (f"Real test-speaker clips the judge never heard ({real['clips']}): judge accuracy",
         _percent(real.get("accuracy"))),
        ("Real test-speaker clips the judge never heard: inception score", _number(real.get("inception_score"))),
        (f"Vocoder ceiling ({ceiling['clips']} test clips, mel → Griffin-Lim → audio): judge accuracy",
         _percent(ceiling.get("accuracy")) + f" (same clips as recorded: {_percent(ceiling.get('real_accuracy_same_clips'))})"),
        ("VAE on test clips: reconstruction MSE (z = μ, normalised mels)", _number(vae.get("reconstruction_mse"))),
        ("VAE on test clips: judge accuracy on the reconstructed mels", _percent(vae.get("judge_accuracy_mel"))),
        ("VAE reconstructions re-synthesised (reference clips): judge accuracy",
         _percent(vae.get("judge_accuracy_resynthesised"))),
        ("Novelty: median distance to the nearest training mel, generated / reconstructed unheard speakers",
         f"{_number(novel.get('generated_nearest_train'))} / {_number(novel.get('unheard_nearest_train'))} "
         f"(ratio {_number(novel.get('ratio'))}; 1 or more: as new as an unheard speaker, near 0: replays)"),
        ("Novelty: generated clips nearer the training set than 99 % of unheard speakers' are (copies)",
         _percent(novel.get("copies"))),
    ]
    return rows


def write_listening_page(out_dir: Path, judge: Judge, records: list[dict], gen: dict, refs: list[dict],
                         judged_refs: dict, metrics: dict) -> None:
    """The listening page and its files in ``out_dir``: wavs, mel PNGs, ``verdicts.json``, ``index.html``."""
    low, high = float(judge.mel_min.min()), float(judge.mel_max.max())
    verdict_log = []

    def place(subdir: str, name: str, wav: bytes, result: dict, index: int, expected: int | None,
              title: str) -> listening.Clip:
        folder = Path(out_dir) / subdir
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.wav").write_bytes(wav)
        mel_db = result["mels_db"][index]
        image = None
        if mel_db is not None:
            listening.save_mel_png(folder / f"{name}.png", mel_db, low=low, high=high)
            image = f"{subdir}/{name}.png"
        verdicts, confidence = _verdicts(result, len(result["mels_db"]))
        judged = verdicts[index] >= 0
        verdict_log.append({
            "file": f"{subdir}/{name}.wav", "expected": expected,
            "verdict": int(verdicts[index]) if judged else None,
            "confidence": float(confidence[index]) if judged else None, "problem": result["problems"][index],
        })
        return listening.Clip(
            audio=f"{subdir}/{name}.wav", image=image, title=title,
            verdict=judge.classes[verdicts[index]] if judged else None,
            confidence=float(confidence[index]) if judged else None,
            expected=None if expected is None else judge.classes[expected],
            note=None if judged else f"not judged: {result['problems'][index]}",
        )

    clips = [place(GENERATED_SUBDIR, r["file"][:-4], r["wav"], gen, i, r["digit"], r["file"])
             for i, r in enumerate(records)]
    if metrics["generated"]["conditional"]:
        rows = [(str(d), [c for c, r in zip(clips, records) if r["digit"] == d])
                for d in sorted({r["digit"] for r in records})]
    else:  # nothing was asked for: group by what the judge heard
        rows = [(f"heard {name}", [c for c in clips if c.verdict == name]) for name in judge.classes]
        rows = [row for row in rows if row[1]] + ([("not judged", [c for c in clips if c.verdict is None])]
                                                  if any(c.verdict is None for c in clips) else [])

    reference_rows = []
    for i, ref in sorted(enumerate(refs), key=lambda item: (item[1]["digit"], item[0])):
        stem = f"{i:03d}_{ref['digit']}"
        reference_rows.append((str(ref["digit"]), [
            place(REFERENCE_SUBDIR, f"{stem}_{kind}", ref[kind], judged_refs[kind], i, ref["digit"], title)
            for kind, title in (("real", Path(ref["member"]).name), ("ceiling", "Griffin-Lim of its mel"),
                                ("vae", "VAE reconstruction"))
        ]))

    listening.write_page(
        out_dir, title="Spoken digits: generated voices, judged", headline=headline(metrics), intro=PAGE_INTRO,
        warning=metrics["judge"].get("warning"),
        generated=rows, references=reference_rows,
        reference_header=["digit", "real test clip never heard by the judge, as recorded", "vocoder ceiling: mel → Griffin-Lim → audio",
                          "VAE reconstruction (z = μ) → Griffin-Lim"],
        notes=["The vocoder ceiling is what a perfect mel generator would sound like with this pipeline's "
               "Griffin-Lim settings; generated clips cannot be judged better than it, except by chance.",
               "verdicts.json beside this page lists every clip's verdict and confidence."],
    )
    (Path(out_dir) / VERDICTS_JSON).write_text(json.dumps(verdict_log, indent=2) + "\n", encoding="utf-8")
