"""The ``evaluate`` stage: how good are the generated voices, judged by the digit classifier.

Everything the judge hears is audio, re-extracted through the same mel
pipeline as the training data:

- the generated wav files (data/generated);
- real test clips, as recorded (the clean reference), and the same clips
  passed through mel → Griffin-Lim → audio with the pipeline's own settings
  (the *vocoder ceiling*: the best a perfect mel generator could score);
- the VAE's reconstructions of those clips, re-synthesised the same way.

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
from speakdigits.errors import PipelineError
from speakdigits.files import atomic_dir
from speakdigits.generation import SAMPLES_JSON
from speakdigits.judge import Judge, accuracy, frechet_distance, summary
from speakdigits.model import decode, encode, load_halves, read_model_info
from speakdigits.normalize import SPLIT_JSON, denormalize, load_split, load_stats
from speakdigits.vocoder import mel_to_audio

# Where the page's files go, relative to it.
GENERATED_SUBDIR = "generated"
REFERENCE_SUBDIR = "reference"
VERDICTS_JSON = "verdicts.json"

PAGE_INTRO = [
    "Every clip below was judged by the digit classifier of the classify stage, from its audio: the wav file "
    "is turned into a log-mel image exactly as the training clips were. The image beside each player is that "
    "mel; the caption gives the judge's verdict and its confidence (✓ when it is the digit asked for).",
    "For scale: DiffWave (ICLR 2021) reached 91.2 % accuracy and inception score 6.63 on class-conditional "
    "spoken digits, where real test clips scored 98.76 % and 8.47; the original student VAE was about 80 % "
    "recognisable by ear on 20 samples.",
]


def read_generated(generated_dir: Path) -> list[dict]:
    """The generate stage's clip records (``file``, ``digit`` or None), with each file's bytes as ``wav``."""
    path = Path(generated_dir) / SAMPLES_JSON
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run the generate stage first (dvc repro generate)") from None
    for record in records:
        try:
            record["wav"] = (Path(generated_dir) / record["file"]).read_bytes()
        except FileNotFoundError:
            raise PipelineError(f"{Path(generated_dir) / record['file']}: listed in {path} but missing; "
                                "rerun the generate stage (dvc repro -f generate)") from None
    return records


def reference_candidates(raw_dir: Path, normalized_dir: Path, *, seed: int) -> list[tuple[str, int]]:
    """Raw clips of the test speakers, ``(member, digit)``, in the order to use them.

    Digits take turns (one clip of each digit, then a second of each, ...), so
    that any number of references covers the digits evenly; within a digit the
    order is a shuffle drawn with ``seed``.
    """
    split_path = Path(normalized_dir) / SPLIT_JSON
    try:
        test_speakers = set(json.loads(split_path.read_text(encoding="utf-8"))["test"])
    except FileNotFoundError:
        raise PipelineError(f"{split_path}: not found; run the normalize stage first") from None
    by_digit: dict[int, list[str]] = {}
    for member in sorted(raw.clip_names(raw_dir)):
        parsed = raw.parse_clip_name(member)
        if parsed is not None and parsed[1] in test_speakers:
            by_digit.setdefault(parsed[0], []).append(member)
    rng = np.random.default_rng([seed, 5])
    queues = {d: [names[i] for i in rng.permutation(len(names))] for d, names in sorted(by_digit.items())}
    order = []
    for turn in range(max((len(q) for q in queues.values()), default=0)):
        order.extend((q[turn], d) for d, q in queues.items() if turn < len(q))
    return order


def _resynthesise(mel_db: np.ndarray, *, mel: dict, generate: dict, seed: int) -> bytes:
    samples = mel_to_audio(mel_db, mel=mel, n_iter=generate["griffin_lim_iters"],
                           momentum=generate["griffin_lim_momentum"], seed=seed)
    return wav_bytes(samples, mel["sample_rate"])


def references(judge: Judge, vae: tuple, raw_dir: Path, normalized_dir: Path, *, count: int, mel: dict,
               generate: dict, seed: int) -> list[dict]:
    """Up to ``count`` real test clips, each as recorded, through Griffin-Lim and through the VAE.

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
    raw_dir, normalized_dir : Path
        Outputs of the download and normalize stages.
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
        for member, digit in reference_candidates(raw_dir, normalized_dir, seed=seed):
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
    digits = np.array([c["digit"] for c in chosen])
    mu, _ = encode(encoder, images, digits, conditional=info["conditional"])
    rebuilt = np.clip(decode(decoder, mu, digits, conditional=info["conditional"]), 0.0, 1.0)
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


def vae_reconstruction(judge: Judge, vae: tuple, test: dict) -> dict:
    """The VAE on every test clip, with z = μ: mean squared error of the
    reconstruction (normalised units, as the train stage reports it, but
    clipped to [0, 1] as generation does) and the judge's accuracy on the
    reconstructed mels themselves (no audio)."""
    if len(test["x"]) == 0:
        return {}
    info, encoder, decoder = vae
    mu, _ = encode(encoder, test["x"], test["digit"], conditional=info["conditional"])
    rebuilt = np.clip(decode(decoder, mu, test["digit"], conditional=info["conditional"]), 0.0, 1.0)
    probs, _ = judge.images(rebuilt)
    return {"reconstruction_mse": float(np.mean((rebuilt - test["x"]) ** 2)),
            "judge_accuracy_mel": accuracy(probs, test["digit"])}


def real_frechet_floor(judge: Judge, val: dict, test_embeddings: np.ndarray, *, count: int,
                       seed: int) -> float | None:
    """Fréchet distance from ``count`` real validation clips to the real test clips.

    What a generator as good as real speech would score: other speakers than
    the test ones, as many clips as were generated (the estimate grows as the
    sample shrinks) and, like the generated set, the digits in turn (the
    embeddings cluster by digit, so an uneven draw alone would add distance).
    None when there are no such clips.
    """
    if count == 0 or len(val["x"]) == 0 or len(test_embeddings) == 0:
        return None
    rng = np.random.default_rng([seed, 6])
    queues = [list(rng.permutation(np.flatnonzero(val["digit"] == d))) for d in np.unique(val["digit"])]
    pick = [q[turn] for turn in range(max(map(len, queues))) for q in queues if turn < len(q)][:count]
    return frechet_distance(judge.images(val["x"][np.sort(pick)])[1], test_embeddings)


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
             listen_dir: Path, mel: dict, generate: dict, reference_clips: int, seed: int) -> dict:
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
    seed : int
        The pipeline's seed.

    Returns
    -------
    dict
        The metrics: ``generated`` (``accuracy`` for a conditional model,
        ``inception_score``, ``mean_confidence``, ``class_histogram``,
        ``frechet_distance`` to the real test clips), ``real`` (the test
        clips; its ``frechet_distance`` is :func:`real_frechet_floor`),
        ``vocoder_ceiling`` and ``vae``.
    """
    mel_min, mel_max = load_stats(normalized_dir)
    judge = Judge.load(classifier_dir, mel=mel, mel_min=mel_min, mel_max=mel_max)
    records = read_generated(generated_dir)
    requested = [r["digit"] for r in records]
    conditional = any(d is not None for d in requested)
    gen = judge.wavs([r["wav"] for r in records])
    test = load_split(normalized_dir, "test")
    real_probs, real_embeddings = judge.images(test["x"])
    vae = load_vae(model_dir)
    refs = references(judge, vae, raw_dir, normalized_dir, count=reference_clips, mel=mel, generate=generate,
                      seed=seed)
    ref_digits = [r["digit"] for r in refs]
    judged_refs = {kind: judge.wavs([r[kind] for r in refs]) for kind in ("real", "ceiling", "vae")}

    generated = summary(gen["probs"])
    generated.update(clips=len(records), unjudgeable=len(records) - len(gen["judged"]), conditional=conditional)
    if conditional:
        generated["accuracy"] = _judged_summary(gen, requested, len(records))["accuracy"]
    if len(gen["judged"]) and len(real_embeddings):
        generated["frechet_distance"] = frechet_distance(gen["embeddings"], real_embeddings)
    real = summary(real_probs, test["digit"])
    real.pop("class_histogram", None)
    real_fd = real_frechet_floor(judge, load_split(normalized_dir, "val"), real_embeddings,
                                 count=len(gen["judged"]), seed=seed)
    if real_fd is not None:
        real["frechet_distance"] = real_fd
    ceiling = _judged_summary(judged_refs["ceiling"], ref_digits, len(refs))
    if refs:
        ceiling["real_accuracy_same_clips"] = _judged_summary(judged_refs["real"], ref_digits, len(refs))["accuracy"]
    vae_metrics = vae_reconstruction(judge, vae, test)
    if refs:
        vae_metrics["judge_accuracy_resynthesised"] = _judged_summary(judged_refs["vae"], ref_digits,
                                                                      len(refs))["accuracy"]
    metrics = {"generated": generated, "real": real, "vocoder_ceiling": ceiling, "vae": vae_metrics}

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
    rows = []
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
        (f"Real test clips ({real['clips']}): judge accuracy", _percent(real.get("accuracy"))),
        ("Real test clips: inception score", _number(real.get("inception_score"))),
        (f"Vocoder ceiling ({ceiling['clips']} test clips, mel → Griffin-Lim → audio): judge accuracy",
         _percent(ceiling.get("accuracy")) + f" (same clips as recorded: {_percent(ceiling.get('real_accuracy_same_clips'))})"),
        ("VAE on test clips: reconstruction MSE (z = μ, normalised mels)", _number(vae.get("reconstruction_mse"))),
        ("VAE on test clips: judge accuracy on the reconstructed mels", _percent(vae.get("judge_accuracy_mel"))),
        ("VAE reconstructions re-synthesised (reference clips): judge accuracy",
         _percent(vae.get("judge_accuracy_resynthesised"))),
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
        generated=rows, references=reference_rows,
        reference_header=["digit", "real test clip, as recorded", "vocoder ceiling: mel → Griffin-Lim → audio",
                          "VAE reconstruction (z = μ) → Griffin-Lim"],
        notes=["The vocoder ceiling is what a perfect mel generator would sound like with this pipeline's "
               "Griffin-Lim settings; generated clips cannot be judged better than it, except by chance.",
               "verdicts.json beside this page lists every clip's verdict and confidence."],
    )
    (Path(out_dir) / VERDICTS_JSON).write_text(json.dumps(verdict_log, indent=2) + "\n", encoding="utf-8")
