"""Choosing the voice: ``generate --like``, ``--speaker`` and ``--between`` on a tiny trained model
(trained as ``test_model``'s), and the latent map's arithmetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_model import GEN_SETTINGS, LATENT, MEL, gen, run_train, write_normalized

from speakdigits.errors import PipelineError
from speakdigits.formats.model import load_vae, read_latents, read_speakers
from speakdigits.formats.normalized import load_split, load_stats
from speakdigits.model import saying
from speakdigits.voice_detail import interpolate
from speakdigits.voices import (
    chosen_voice,
    features,
    latent_map,
    nearest_mean_accuracy,
    read_clip,
)
from speakdigits.wav import wav_bytes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny conditional model trained for 2 epochs (as test_model's), and its normalized folder."""
    root = tmp_path_factory.mktemp("voices")
    normalized = write_normalized(root / "normalized")
    model_dir, _, _ = run_train(root, "model", normalized)
    return {"model": model_dir, "normalized": normalized}


def tone(path, *, f0: float = 150.0, seconds: float = 0.5, level: float = 0.5):
    """A wav file of a harmonic tone at MEL's rate: a voice of a kind."""
    t = np.arange(int(seconds * MEL.sample_rate)) / MEL.sample_rate
    samples = level * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    path.write_bytes(wav_bytes(samples.astype(np.float32), MEL.sample_rate))
    return path


def posterior_mean(tiny, path, digit: int) -> np.ndarray:
    vae = load_vae(tiny["model"])
    low, high = load_stats(tiny["normalized"])
    image, pitch = features(read_clip(path, MEL), mel=MEL, mel_min=low, mel_max=high)
    return vae.encode(image[None], pitch[None], np.array([digit]))[0][0]


def choose(tiny, takes: int = 1, latent_voice: float = 1.0, digits: list | None = None, **voice):
    """The voices asked for and where they came from, one per take, saying ``digits`` (default: each take 0)."""
    return choose_with_detail(tiny, takes, latent_voice, digits, **voice)[:2]


def choose_with_detail(tiny, takes: int = 1, latent_voice: float = 1.0, digits: list | None = None, **voice):
    """:func:`chosen_voice` on the tiny model: the voices, where they came from and their detail."""
    return chosen_voice(
        tiny["model"],
        tiny["normalized"],
        takes,
        digits=[0] * takes if digits is None else digits,
        mel=MEL,
        temperature=0.5,
        latent_voice=latent_voice,
        seed=1,
        **voice,
    )


def centre(tiny, digit: int) -> np.ndarray:
    return np.asarray(read_latents(tiny["model"])[str(digit)]["mean"])


def test_a_clip_converted_to_another_digit_has_that_digits_condition_and_the_clips_voice(tiny, tmp_path):
    source = tone(tmp_path / "3_ann_0.wav")
    voice, voices = choose(tiny, like=[source])
    mu = posterior_mean(tiny, source, 3)  # its own digit, read from its name
    assert not np.allclose(mu, posterior_mean(tiny, source, 7), atol=1e-6)  # the digit it says matters
    # Its voice is its latent vector less its digit's centre; said as its own digit, it is the clip's own z.
    np.testing.assert_allclose(voice[0], mu - centre(tiny, 3), rtol=1e-5, atol=1e-6)
    latents = read_latents(tiny["model"])
    np.testing.assert_allclose(saying(voice, [3], latents)[0], mu, rtol=1e-5, atol=1e-6)
    assert voices == [{"like": str(source)}]

    # Said as 7: the source's voice at 7's centre, decoded with 7's condition.
    z = saying(voice, [7], latents)
    np.testing.assert_allclose(z[0] - centre(tiny, 7), mu - centre(tiny, 3), rtol=1e-5, atol=1e-6)
    out = tmp_path / "out"
    records = gen(tiny, out, [7], z=z, voices=voices)
    vae = load_vae(tiny["model"])
    said_7, said_2 = (np.clip(vae.decode(z, np.array([d]))[0][0], 0, 1) for d in (7, 2))
    made = np.load(out / "mels.npy")[0]
    np.testing.assert_allclose(made, said_7, atol=1e-6)
    assert not np.allclose(made, said_2, atol=1e-3)
    assert records[0]["file"] == "7_00.wav" and records[0]["voice"] == {"like": str(source)}
    assert json.loads((out / "samples.json").read_text())[0]["voice"] == {"like": str(source)}


def test_a_recordings_voice_is_pulled_toward_its_digits_centre_and_its_detail_measured_there(tiny, tmp_path):
    """generate.latent_voice: the share of a recording's offset from its digit's centre kept in z; its detail
    is what the decoder's clip of that nearer voice, saying the recording's digit, misses of it."""
    from speakdigits.formats.normalized import denormalize
    from speakdigits.voice_detail import speech_levels, warped

    source = tone(tmp_path / "3_ann_0.wav")
    offset = posterior_mean(tiny, source, 3) - centre(tiny, 3)
    latents, vae, (low, high) = read_latents(tiny["model"]), load_vae(tiny["model"]), load_stats(tiny["normalized"])
    image, pitch = features(read_clip(source, MEL), mel=MEL, mel_min=low, mel_max=high)
    real = speech_levels(denormalize(image[None], low, high)[0])
    for share in (0.25, 0.0):
        voice, _, detail = choose_with_detail(tiny, 1, share, digits=[3], like=[source])
        np.testing.assert_allclose(voice[0], share * offset, rtol=1e-5, atol=1e-6)
        rebuilt, _ = vae.decode(saying(voice, [3], latents), np.array([3]))
        # Measured against that clip with its formants moved to the recording's (voice_detail.formant_warp).
        said = speech_levels(warped(denormalize(np.clip(rebuilt, 0, 1), low, high)[0], detail.log_warp[0], mel=MEL))
        np.testing.assert_allclose(detail.levels_db[0], real - said, rtol=1e-5, atol=1e-4)
    # With none of it, the voice is the digit's centre: said as 7, 7's centre, and all of the voice in its detail.
    np.testing.assert_allclose(saying(voice, [7], latents)[0], centre(tiny, 7), atol=1e-6)
    whole = choose(tiny, like=[source])[0]
    assert not np.allclose(whole, voice, atol=1e-3)


def test_several_takes_of_a_voice_vary_around_it(tiny, tmp_path):
    source = tone(tmp_path / "clip.wav")
    voice, _ = choose(tiny, 200, like=[source], like_digit=5)
    expected = posterior_mean(tiny, source, 5) - centre(tiny, 5)
    assert voice.shape == (200, LATENT) and len({row.tobytes() for row in voice}) == 200
    assert np.allclose(voice.mean(axis=0), expected, atol=0.25 * voice.std(axis=0).max() + 1e-3)
    again, _ = choose(tiny, 200, like=[source], like_digit=5)
    assert np.array_equal(voice, again)  # the seed decides


def test_several_recordings_of_a_voice_give_the_mean_of_their_voices(tiny, tmp_path):
    clips = [tone(tmp_path / f"{d}_ann_{d}.wav", f0=f0) for d, f0 in ((3, 120), (5, 150), (8, 180))]
    voice, voices = choose(tiny, like=clips)
    alone = np.concatenate([choose(tiny, like=[clip])[0] for clip in clips])
    assert not np.allclose(alone[0], alone[1], atol=1e-3)  # three voices, not one
    # Each clip encoded with its own digit (from its name); the voice their mean.
    np.testing.assert_allclose(voice[0], alone.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert voices == [{"like": [str(clip) for clip in clips]}]
    takes, _ = choose(tiny, 200, like=clips)
    assert np.allclose(takes.mean(axis=0), voice[0], atol=0.25 * takes.std(axis=0).max() + 1e-3)
    # One bad recording among them is refused, by its name.
    bad = tmp_path / "2_ann_9.wav"
    bad.write_text("not a wav")
    with pytest.raises(PipelineError, match=f"^{bad}: .*expected a wav file of one spoken digit"):
        choose(tiny, like=[clips[0], bad])


def test_several_recordings_say_a_digit_one_of_them_says_as_it_says_it(tiny, tmp_path):
    """--like with recordings of several digits: a digit one of them says in its voice with its detail; the
    others in their mean voice with the mean of their details."""
    from speakdigits.voice_detail import recording_details

    sources = [tone(tmp_path / "3_ann_0.wav"), tone(tmp_path / "5_ann_1.wav", f0=180.0)]
    voice, _, detail = choose_with_detail(tiny, 1, digits=[3, 5, 7], like=sources)
    offsets = np.array([posterior_mean(tiny, s, d) - centre(tiny, d) for s, d in zip(sources, (3, 5))])
    np.testing.assert_allclose(voice, [offsets[0], offsets[1], offsets.mean(axis=0)], rtol=1e-5, atol=1e-6)
    vae, (low, high) = load_vae(tiny["model"]), load_stats(tiny["normalized"])
    images, pitches = zip(*(features(read_clip(s, MEL), mel=MEL, mel_min=low, mel_max=high) for s in sources))
    digits = np.array([3, 5])
    mu, _ = vae.encode(np.stack(images), np.stack(pitches), digits)
    own = recording_details(vae, np.stack(images), np.stack(pitches), digits, mu, mel=MEL, mel_min=low, mel_max=high)
    np.testing.assert_allclose(detail.levels_db[:2], own.levels_db, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(detail.levels_db[2], own.levels_db.mean(axis=0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(detail.log_warp, [*own.log_warp, own.log_warp.mean()])


def test_interpolation_starts_and_ends_at_the_two_sources(tiny, tmp_path):
    a, b = tone(tmp_path / "1_ann_0.wav", f0=120), tone(tmp_path / "8_bob_0.wav", f0=240)
    voice, voices = choose(tiny, 5, between=(a, b))
    start, end = posterior_mean(tiny, a, 1), posterior_mean(tiny, b, 8)
    # Said as their own digits, the two ends decode the two sources' latent vectors.
    latents = read_latents(tiny["model"])
    np.testing.assert_allclose(saying(voice[:1], [1], latents)[0], start, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saying(voice[-1:], [8], latents)[0], end, rtol=1e-5, atol=1e-6)
    middle = ((start - centre(tiny, 1)) + (end - centre(tiny, 8))) / 2
    np.testing.assert_allclose(voice[2], middle, rtol=1e-5, atol=1e-6)
    assert [v["step"] for v in voices] == [0, 1, 2, 3, 4] and voices[0]["between"] == [str(a), str(b)]
    np.testing.assert_array_equal(interpolate(np.zeros(2), np.ones(2), 1), [[0.0, 0.0]])


def test_a_training_speakers_voice_is_the_mean_of_their_clips_voices(tiny):
    speakers = read_speakers(tiny["model"])
    train = load_split(tiny["normalized"], "train")
    assert sorted(speakers) == sorted(set(train["speaker"].tolist()))
    vae = load_vae(tiny["model"])
    mu, _ = vae.encode(train["x"], train["pitch"], train["digit"])
    offsets = mu - np.array([centre(tiny, d) for d in train["digit"]])
    for name, voice in speakers.items():
        rows = train["speaker"] == name
        assert voice["clips"] == int(rows.sum())
        np.testing.assert_allclose(voice["mean"], offsets[rows].mean(axis=0), rtol=1e-5, atol=1e-6)
    # And per digit they said, their voice saying it: their takes' mean offset from its centre.
    name = sorted(speakers)[0]
    said = speakers[name]["digits"]
    assert sorted(said) == ["0", "2", "4", "6", "8"]  # train0 says the even digits
    rows = train["speaker"] == name
    for digit, entry in said.items():
        np.testing.assert_allclose(
            entry["voice"], offsets[rows & (train["digit"] == int(digit))].mean(axis=0), rtol=1e-5, atol=1e-6
        )
    # --speaker: a digit they said in their voice saying it; one they never said, in their mean voice.
    voice, voices = choose(tiny, speaker=name, digits=[4])
    np.testing.assert_allclose(voice[0], said["4"]["voice"])
    assert voices == [{"speaker": name}]
    voice, _ = choose(tiny, speaker=name, digits=[5])
    np.testing.assert_allclose(voice[0], speakers[name]["mean"])
    # Several takes: the same draws around their mean, each moved to the digit's voice.
    takes, _ = choose(tiny, 2, speaker=name, digits=[2, 2, 8, 8])
    assert not np.allclose(takes[0], takes[1], atol=1e-3)
    moved = np.subtract(said["8"]["voice"], said["2"]["voice"])
    np.testing.assert_allclose(takes[2:] - takes[:2], np.tile(moved, (2, 1)), rtol=1e-5, atol=1e-6)


def test_a_training_speakers_voice_gets_back_what_it_misses_of_their_recordings_of_each_digit(tiny):
    """speakers.json: per speaker and digit, their recordings' band levels over speech and median f0, less those
    of the decoder's clips of their voice saying that digit; generate --speaker adds them back."""
    from speakdigits.formats.normalized import denormalize
    from speakdigits.pitch import from_unit
    from speakdigits.voice_detail import MIN_VOICED_S, formant_warp, median_log_f0, speech, speech_levels, warped

    speakers, latents = read_speakers(tiny["model"]), read_latents(tiny["model"])
    train = load_split(tiny["normalized"], "train")
    vae, (low, high) = load_vae(tiny["model"]), load_stats(tiny["normalized"])
    entries = [entry for voice in speakers.values() for entry in voice["digits"].values()]
    for name, digit, entry in [(n, d, e) for n, voice in speakers.items() for d, e in voice["digits"].items()]:
        rows = np.flatnonzero((train["speaker"] == name) & (train["digit"] == int(digit)))
        digits, detail = train["digit"][rows], entry["detail"]
        rebuilt, rebuilt_pitch = vae.decode(saying(np.tile(entry["voice"], (len(rows), 1)), digits, latents), digits)
        real_db = denormalize(train["x"][rows], low, high)
        again_db = denormalize(np.clip(rebuilt, 0, 1), low, high)
        least = int(np.ceil(MIN_VOICED_S * MEL.frames / MEL.duration))
        real_tracks, again_tracks = from_unit(train["pitch"][rows]), from_unit(np.clip(rebuilt_pitch, 0, 1))
        # The formants first, from the voiced speech where both have enough of it (else from all their speech);
        # the levels then against the decoder's clips with their formants moved there.
        warps, moved = [], []
        for a, b, ta, tb in zip(real_db, again_db, real_tracks, again_tracks):
            va, vb = ta[1] > 0.5, tb[1] > 0.5
            enough = min((speech(a) & va).sum(), (speech(b) & vb).sum()) >= least
            warps.append(
                formant_warp(
                    speech_levels(a, va if enough else None), speech_levels(b, vb if enough else None), mel=MEL
                )
            )
            moved.append(warped(b, warps[-1], mel=MEL))
        assert detail["log_warp"] == pytest.approx(np.mean(warps), abs=1e-9)
        missed = [speech_levels(a) - speech_levels(b) for a, b in zip(real_db, moved)]
        levels = np.mean(missed, axis=0)
        assert len(detail["levels_db"]) == len(detail["voiced_db"]) == MEL.n_mels
        np.testing.assert_allclose(detail["levels_db"], levels, rtol=1e-4, atol=1e-3)
        f0 = [
            median_log_f0(a, min_frames=least) - median_log_f0(b, min_frames=least)
            for a, b in zip(from_unit(train["pitch"][rows]), from_unit(np.clip(rebuilt_pitch, 0, 1)))
        ]
        f0 = [x for x in f0 if np.isfinite(x)]
        assert detail["log_f0"] == pytest.approx(np.mean(f0) if f0 else 0.0, abs=1e-5)
        # Over voiced speech alone, where both have enough of it (else over all their speech), and the pace.
        voiced = []
        for a, b, ta, tb, whole in zip(real_db, moved, real_tracks, again_tracks, missed):
            va, vb = ta[1] > 0.5, tb[1] > 0.5
            enough = min((speech(a) & va).sum(), (speech(b) & vb).sum()) >= least
            voiced.append(speech_levels(a, va) - speech_levels(b, vb) if enough else whole)
        np.testing.assert_allclose(detail["voiced_db"], np.mean(voiced, axis=0), rtol=1e-4, atol=1e-3)
        pace = np.mean([np.log(speech(a).sum() / speech(b).sum()) for a, b in zip(real_db, again_db)])
        assert detail["log_pace"] == pytest.approx(pace, abs=1e-6)
    # The decoder's average voice misses something of every speaker.
    assert all(np.abs(entry["detail"]["levels_db"]).max() > 0.1 for entry in entries)
    # --speaker: each clip gets their detail of its digit; a digit they never said, the mean of theirs.
    name = sorted(speakers)[0]  # says 0, 2, 4, 6, 8
    _, _, detail = choose_with_detail(tiny, 3, digits=[0, 2, 5], speaker=name)
    said = [speakers[name]["digits"][d]["detail"] for d in ("0", "2", "4", "6", "8")]
    for key in ("levels_db", "voiced_db", "log_pace", "log_warp", "log_f0"):
        np.testing.assert_allclose(getattr(detail, key)[:2], [said[0][key], said[1][key]], rtol=1e-12)
        np.testing.assert_allclose(getattr(detail, key)[2], np.mean([d[key] for d in said], axis=0), rtol=1e-9)


def test_a_voice_from_several_takes_is_the_mean_of_their_voices_saying_every_digit(tiny):
    """The evaluate stage's voices of unheard speakers (take_voices), as generate --like with several takes."""
    from speakdigits.evaluation import take_groups
    from speakdigits.voice_evaluation import take_voices
    from speakdigits.wav import decode_wav

    test = load_split(tiny["normalized"], "test")  # speakers test0 (digits 0, 2, ... 8) and test1 (1, 3, ... 9)
    groups = take_groups(test, 2, rng=np.random.default_rng(0))
    assert len(groups) == 4  # two voices of two takes each, from each speaker's five
    low, high = load_stats(tiny["normalized"])

    vae = load_vae(tiny["model"])
    made = take_voices(
        vae,
        read_latents(tiny["model"]),
        test,
        groups,
        seed=0,
        mel=MEL,
        mel_min=low,
        mel_max=high,
        generate=GEN_SETTINGS,
    )
    mu, _ = vae.encode(test["x"], test["pitch"], test["digit"])
    offsets = mu - np.array([centre(tiny, d) for d in test["digit"]])
    for voice, group in zip(made["voices"], groups, strict=True):
        np.testing.assert_allclose(voice, offsets[group].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert made["digits"] == list(range(10)) * 4
    assert made["speakers"] == [str(test["speaker"][group[0]]) for group in groups for _ in range(10)]
    first = groups[0]
    assert made["takes"][0] == [f"{test['digit'][i]}_{test['speaker'][i]}_{test['take'][i]}" for i in first]
    assert len(made["wavs"]) == 40
    samples, rate = decode_wav(made["wavs"][0])
    assert rate == MEL.sample_rate and len(samples) == MEL.n_samples and np.abs(samples).max() > 0


def test_what_a_voices_latent_vector_misses_is_added_back_to_its_clips(tiny, tmp_path):
    """generate.voice_detail: the recordings' band levels over speech less their reconstructions', added back."""
    import dataclasses

    from speakdigits.formats.normalized import denormalize
    from speakdigits.generation import vocode_decoded
    from speakdigits.pitch import VOICING, from_unit
    from speakdigits.vocoder import with_levels, with_pace
    from speakdigits.voice_detail import recording_details, speech_levels, warped

    sources = [tone(tmp_path / "3_ann_0.wav"), tone(tmp_path / "5_ann_1.wav", f0=180.0)]
    voice, _, detail = choose_with_detail(tiny, 2, digits=[7, 7], like=sources)  # a digit neither says
    vae, low, high = load_vae(tiny["model"]), *load_stats(tiny["normalized"])
    images, pitches = zip(*(features(read_clip(s, MEL), mel=MEL, mel_min=low, mel_max=high) for s in sources))
    digits = np.array([3, 5])
    mu, _ = vae.encode(np.stack(images), np.stack(pitches), digits)
    rebuilt, _ = vae.decode(mu, digits)
    # Each recording's levels against its reconstruction with the formants moved to the recording's.
    warps = recording_details(vae, np.stack(images), np.stack(pitches), digits, mu, mel=MEL, mel_min=low, mel_max=high)
    missed = [
        speech_levels(denormalize(image[None], low, high)[0])
        - speech_levels(warped(denormalize(np.clip(again, 0, 1)[None], low, high)[0], warp, mel=MEL))
        for image, again, warp in zip(images, rebuilt, warps.log_warp)
    ]
    # Both takes get the mean of the two recordings' details.
    assert detail.levels_db.shape == (2, MEL.n_mels)
    np.testing.assert_allclose(detail.levels_db, np.tile(np.mean(missed, axis=0), (2, 1)), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(detail.log_warp, [warps.log_warp.mean()] * 2)
    # Said as 7: the decoded image raised by those levels, band by band (the floor kept silence).
    decoded = vae.decode(saying(voice, [7, 7], read_latents(tiny["model"])), np.array([7, 7]))

    making = dict(mel=MEL, mel_min=low, mel_max=high, seeds=[0, 1])
    plain, _ = vocode_decoded(*decoded, generate=GEN_SETTINGS, **making)
    # At the decoder's own pace (log_pace 0), each frame raised by the voiced speech's levels where the
    # decoder's track is voiced, by the whole speech's elsewhere.
    unpaced = dataclasses.replace(detail, log_pace=np.zeros(2), log_warp=np.zeros(2))
    raised, _ = vocode_decoded(*decoded, generate=GEN_SETTINGS, detail=unpaced, **making)
    tracks = from_unit(decoded[1])
    levels = unpaced.frame_levels(tracks[:, VOICING] > 0.5)
    # Compared where the frame is speech (its loudest band within 40 dB of the clip's loudest bin) and the bin
    # well above the floor, before and after.
    speech = plain.max(axis=1, keepdims=True) >= plain.max(axis=(1, 2), keepdims=True) - 40
    loud = (
        speech
        & (plain > plain.max(axis=(1, 2), keepdims=True) - 60)
        & (raised > raised.max(axis=(1, 2), keepdims=True) - 60)
    )
    assert loud.sum() > 100
    np.testing.assert_allclose((raised - plain)[loud], levels[loud])
    # With a pace (one voice slower, one faster), the same image said that much slower or faster first
    # (vocoder.with_pace); with formants (one voice's higher, one's lower), its formants moved next
    # (voice_detail.warped); then the levels.
    paced_detail = dataclasses.replace(detail, log_pace=np.log([1.5, 0.75]), log_warp=np.array([0.1, -0.15]))
    paced, _ = vocode_decoded(*decoded, generate=GEN_SETTINGS, detail=paced_detail, **making)
    slower, slower_tracks = with_pace(plain, tracks, paced_detail.log_pace)
    assert not np.allclose(slower, plain)
    moved = np.stack([warped(image, warp, mel=MEL) for image, warp in zip(slower, paced_detail.log_warp)])
    assert not np.allclose(moved, slower)
    levels = paced_detail.frame_levels(slower_tracks[:, VOICING] > 0.5)
    np.testing.assert_allclose(paced, with_levels(moved, levels, top_db=MEL.top_db))
    # generate.voice_detail 0: the latent vector alone.
    none, _ = vocode_decoded(
        *decoded, generate=dataclasses.replace(GEN_SETTINGS, voice_detail=0.0), detail=detail, **making
    )
    np.testing.assert_array_equal(none, plain)


def test_a_recordings_rumble_below_the_lowest_voice_is_not_added_to_its_voice(tiny, tmp_path, monkeypatch):
    """Bands centred below pitch.F0_MIN keep the decoder's level: a recording's hum there is no voice."""
    import dataclasses

    from speakdigits import voice_detail
    from speakdigits.voice_detail import recording_details, voice_bands

    vae, (low, high) = load_vae(tiny["model"]), load_stats(tiny["normalized"])
    sources = [tone(tmp_path / "3_ann_0.wav"), tone(tmp_path / "5_ann_1.wav", f0=180.0)]
    images, pitches = map(
        np.stack, zip(*(features(read_clip(s, MEL), mel=MEL, mel_min=low, mel_max=high) for s in sources))
    )
    digits = np.array([3, 5])
    mu, _ = vae.encode(images, pitches, digits)
    # The formants left where the decoder puts them: the two geometries would move them by other factors.
    monkeypatch.setattr(voice_detail, "LOG_WARPS", np.zeros(1))
    # The same images read as 16 bands up to 400 Hz: the two lowest are centred below the lowest voice.
    rumbling = dataclasses.replace(MEL, fmax=400.0)
    below = ~voice_bands(rumbling)  # centres 23.5 and 47 Hz
    assert below.tolist() == [True, True] + [False] * (MEL.n_mels - 2)
    assert voice_bands(MEL).all()
    every = recording_details(vae, images, pitches, digits, mu, mel=MEL, mel_min=low, mel_max=high)
    voiced = recording_details(vae, images, pitches, digits, mu, mel=rumbling, mel_min=low, mel_max=high)
    assert np.abs(every.levels_db[:, below]).max() > 0.1
    np.testing.assert_array_equal(voiced.levels_db[:, below], 0.0)
    np.testing.assert_array_equal(voiced.levels_db[:, ~below], every.levels_db[:, ~below])
    np.testing.assert_array_equal(voiced.voiced_db[:, below], 0.0)
    np.testing.assert_array_equal(voiced.voiced_db[:, ~below], every.voiced_db[:, ~below])
    np.testing.assert_array_equal(voiced.log_f0, every.log_f0)
    np.testing.assert_array_equal(voiced.log_pace, every.log_pace)
    # FSDD's geometry (16 kHz, 64 bands up to 4 kHz): one band, centred at 36 Hz.
    fsdd = dataclasses.replace(MEL, sample_rate=16000, n_mels=64, n_fft=1024, fmax=4000.0)
    assert (~voice_bands(fsdd)).tolist() == [True] + [False] * 63


def test_a_pitch_from_too_little_voiced_speech_is_not_added_to_a_voice(tiny):
    """A recording's median f0 counts only from voice_detail.MIN_VOICED_S of voiced frames: from fewer, it is
    mostly the tracker's errors (an FSDD take with 0.11 s voiced, at four times the speaker's pitch)."""
    from speakdigits.pitch import F0, VOICING, from_unit
    from speakdigits.voice_detail import MIN_VOICED_S, median_log_f0, recording_details

    vae, (low, high) = load_vae(tiny["model"]), load_stats(tiny["normalized"])
    test = load_split(tiny["normalized"], "test")
    images, digits = test["x"][:2], test["digit"][:2]
    least = int(np.ceil(MIN_VOICED_S * MEL.frames / MEL.duration))
    assert 1 < least < MEL.frames
    # The same high pitch in both tracks; the first voiced in one frame fewer than that, the second in exactly that.
    pitches = np.zeros((2, 2, MEL.frames), dtype=np.float32)
    pitches[:, F0] = 0.9
    pitches[0, VOICING, : least - 1] = 1.0
    pitches[1, VOICING, :least] = 1.0
    mu, _ = vae.encode(images, pitches, digits)
    detail = recording_details(vae, images, pitches, digits, mu, mel=MEL, mel_min=low, mel_max=high)
    _, rebuilt = vae.decode(mu, digits)
    decoded = median_log_f0(from_unit(np.clip(rebuilt[1], 0, 1)), min_frames=least)
    assert np.isfinite(decoded)  # the decoder's clip has a pitch of its own
    assert np.isnan(detail.log_f0[0])
    assert detail.log_f0[1] == pytest.approx(median_log_f0(from_unit(pitches[1])) - decoded, abs=1e-5)
    # Nor levels of its voiced speech: the first gets its whole speech's levels for its voiced frames too.
    np.testing.assert_array_equal(detail.voiced_db[0], detail.levels_db[0])
    assert np.isnan(median_log_f0(from_unit(pitches[0]), min_frames=least))
    assert np.isfinite(median_log_f0(from_unit(pitches[0])))  # any voiced frame, without the rule


def test_bad_voices_are_refused_in_one_line(tiny, tmp_path):
    with pytest.raises(PipelineError, match=r"^--speaker 'nobody': not a training speaker; expected one of train0, "):
        choose(tiny, speaker="nobody")
    text = tmp_path / "3_ann_0.wav"
    text.write_text("not a wav")
    silent = tmp_path / "4_ann_0.wav"
    silent.write_bytes(wav_bytes(np.zeros(4000, np.float32), MEL.sample_rate))
    short = tone(tmp_path / "5_ann_0.wav", seconds=0.001)
    unnamed = tone(tmp_path / "hello.wav")
    for path, why in (
        (text, "expected a wav file of one spoken digit"),
        (silent, "silent"),
        (short, "expected a clip of"),
        (tmp_path / "6_gone_0.wav", "cannot read it"),
        (unnamed, "cannot tell from its name which digit it says"),
    ):
        with pytest.raises(PipelineError) as caught:
            choose(tiny, like=[path])
        message = str(caught.value)
        assert message.startswith(str(path)) and why in message and "\n" not in message


def test_the_latent_map_is_the_two_principal_components():
    rng = np.random.default_rng(0)
    points = rng.standard_normal((300, 6)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1, 0.1])
    coords, explained = latent_map(points)
    assert coords.shape == (300, 2) and explained[0] > explained[1] > 0.1 > 1 - explained.sum()
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(points[:, 0] - points[:, 0].mean()), atol=0.2)
    assert latent_map(points[:, :1])[0].shape == (300, 2)  # a one-dimensional latent still draws


def test_nearest_mean_accuracy_tells_separated_labels_from_mixed_ones():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 50)
    apart = rng.standard_normal((200, 3)) * 0.1 + labels[:, None]
    mixed = rng.standard_normal((200, 3))
    assert nearest_mean_accuracy(apart, labels) == 1.0
    assert nearest_mean_accuracy(mixed, labels) < 0.45
    assert nearest_mean_accuracy(mixed, np.zeros(200)) != nearest_mean_accuracy(mixed, np.zeros(200))  # one label: NaN


def test_a_speaker_judge_that_names_the_source_without_a_voice_is_called_out():
    from speakdigits.listening import warnings
    from speakdigits.voice_evaluation import speaker_bias

    # FSDD's case: the one test speaker named in 57 % of conversions, and in 78 % of clips with no voice at all.
    biased = speaker_bias(0.57, 0.78)
    assert biased["voice_kept_without_voice"] == 0.78
    assert "57.0 %" in biased["warning"] and "78.0 %" in biased["warning"] and "no voice" in biased["warning"]
    assert "warning" not in speaker_bias(0.9, 0.2)  # a voice the judge hears only when it is there
    assert "warning" not in speaker_bias(None, 0.5)
    assert biased["warning"].endswith("so voice_kept does not show that the voice was kept")
    # The training speakers' voices (generate --speaker) get the same rule, under their own name.
    known = speaker_bias(0.05, 0.1, measure="kept", clips="training speakers' voices", name="known_voices.kept")
    assert known["kept_without_voice"] == 0.1
    assert "5.0 % of the training speakers' voices" in known["warning"]
    assert "so known_voices.kept does not show" in known["warning"]
    # So do the test speakers' voices from several takes.
    takes = speaker_bias(
        0.1, 0.3, measure="kept", clips="unheard speakers' voices from several takes", name="take_voices.kept"
    )
    assert "so take_voices.kept does not show" in takes["warning"]
    metrics = {
        "judge": {},
        "judges": {"mel": {}},
        "voices": {
            "speaker_bias": biased,
            "known_voices": {"kept": 0.05} | known,
            "take_voices": {"kept": 0.1} | takes,
        },
    }
    # On the page and in the stage's output.
    assert warnings(metrics) == [biased["warning"], known["warning"], takes["warning"]]


def test_a_model_saved_before_the_voiced_levels_and_pace_were_measured_keeps_its_speech_levels():
    """speakers.json of an older train stage has no voiced_db, log_pace or log_warp: --speaker then raises every
    frame by the speech's levels and keeps the decoder's pace and formants, rather than failing."""
    from speakdigits.voices import by_digit, speaker_voice

    older = {"mean": [0.5, 0.5], "detail": {"levels_db": [1.0, -2.0], "log_f0": 0.1}}
    # Nor a voice and detail per digit: the mean voice and the one detail for every digit.
    voices, detail = by_digit(np.zeros((2, 2)), [3, 7], speaker_voice(older))
    np.testing.assert_array_equal(voices, np.zeros((2, 2)))
    np.testing.assert_array_equal(detail.voiced_db, [[1.0, -2.0], [1.0, -2.0]])
    np.testing.assert_array_equal(detail.log_pace, [0.0, 0.0])
    np.testing.assert_array_equal(detail.log_warp, [0.0, 0.0])
    voiced = np.array([[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(detail.frame_levels(voiced), np.tile([[[1.0], [-2.0]]], (2, 1, 3)))
    assert by_digit(np.zeros((1, 1)), [1], speaker_voice({"mean": [0.0]}))[1] is None


def test_a_warp_moves_the_spectral_envelope_in_frequency():
    """voice_detail.warped: a formant at f is at f times the factor after it, in one level vector or an image;
    warp 0 leaves it as it is."""
    import dataclasses

    from speakdigits.params import hz_to_mel, mel_band_centres, mel_to_hz
    from speakdigits.voice_detail import warped

    mel = dataclasses.replace(MEL, sample_rate=16000, n_mels=64, n_fft=1024, fmax=8000.0)
    mels = mel_band_centres(n_mels=64, fmin=0.0, fmax=8000.0)
    centres = mel_to_hz(mels)
    np.testing.assert_allclose(hz_to_mel(centres), mels)
    assert np.all(np.diff(centres) > 0) and 900 < centres[np.argmin(np.abs(mels - 15))] < 1100 and centres[-1] < 8000
    formant = 30 * np.exp(-(((centres - 1000) / 150) ** 2))
    for factor in (0.85, 1.2):
        moved = warped(formant, np.log(factor), mel=mel)
        peak = np.argmax(moved)
        assert abs(centres[peak] - 1000 * factor) <= np.diff(centres)[peak]
        assert moved.max() == pytest.approx(30, abs=3)
    image = np.stack([formant, formant - 5], axis=1)
    np.testing.assert_allclose(warped(image, 0.1, mel=mel)[:, 1], warped(formant, 0.1, mel=mel) - 5)
    np.testing.assert_array_equal(warped(image, 0.0, mel=mel), image)


def test_a_recordings_formants_are_found_by_the_warp_that_fits_them_best():
    """voice_detail.formant_warp: two formants moved by a known factor, and 7 dB louder, give that factor back;
    a factor within the fit's scatter of 1 (voice_detail.MIN_LOG_WARP) gives none."""
    import dataclasses

    from speakdigits.params import mel_band_centres, mel_to_hz
    from speakdigits.voice_detail import LOG_WARPS, formant_warp

    mel = dataclasses.replace(MEL, sample_rate=16000, n_mels=64, n_fft=1024, fmax=8000.0)
    centres = mel_to_hz(mel_band_centres(n_mels=64, fmin=0.0, fmax=8000.0))

    def envelope(factor: float) -> np.ndarray:
        return 40 * np.exp(-(((centres - 700 * factor) / 120) ** 2)) + 30 * np.exp(
            -(((centres - 1800 * factor) / 200) ** 2)
        )

    for log_warp in (-0.12, 0.0, 0.1):
        assert formant_warp(envelope(np.exp(log_warp)) + 7, envelope(1.0), mel=mel) == pytest.approx(log_warp)
    # Beyond the searched warps, the nearest of them.
    assert formant_warp(envelope(1.5), envelope(1.0), mel=mel) == LOG_WARPS[-1]
    for log_warp in (-0.04, 0.03):
        assert formant_warp(envelope(np.exp(log_warp)), envelope(1.0), mel=mel) == 0.0


def test_a_judges_hearing_is_split_by_source_speaker():
    """voice_evaluation.Hearing.by: the share heard right within each group of clips, by name."""
    from speakdigits.voice_evaluation import Hearing

    hearing = Hearing(0.5, [None] * 4, np.array([True, False, False, True]))
    assert hearing.by(["b", "a", "b", "b"]) == {"a": 0.0, "b": pytest.approx(2 / 3)}
