"""Synthetic keyword clips from offline text-to-speech, in the layout training reads.

    python -m training.synthesize --phrase "hey nano" --out DIR [--count N] [--seed S] [--jobs J]
    python -m training.synthesize --phrase "hey nano" --out DIR --confusable   # near misses, as negatives

Clips are spread evenly over the engines found (training.tts_engines) and, within an engine, drawn
from all its voices; each varies in speed, pitch, a resampling shift (pitch and formants together,
like a smaller or larger speaker), punctuation (emphasis and intonation), level and position. Each
is resampled to 16 kHz mono, trimmed of silence, and placed in a 1 s clip:

    DIR/<phrase>/tts-<engine>-<voice>_nohash_<index>.wav      (the phrase is the label folder)
    DIR/<phrase>.synthesis.json                               (engine, voice, parameters of each clip)

The `tts-` prefix keeps synthetic "speakers" apart from Speech Commands' (hex ids), so no rule that
splits by the name before `_nohash_` can put a synthetic clip beside a real speaker's. A rendering
longer than 1 s is rendered again as fast as it must be to fit (at most MAX_SPEED), or dropped and
replaced by a new one: the counts of both are reported. Every random choice of clip i comes from
the seed and i alone, so a seed gives the same files, byte for byte, whatever --jobs is.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile
import soxr

from training.config import FeatureConfig, check_label
from training.confusables import near_miss_phrases
from training.data import is_synthetic, to_int16
from training.progress import Progress
from training.tts_engines import (
    ENGINES,
    Engine,
    EngineError,
    Rendering,
    find_engines,
    pitch_ratio,
    render_batch,
)

SPEED_RANGE = (0.8, 1.25)  # speaking rate relative to the voice's normal one
PITCH_RANGE = (-3.0, 3.0)  # semitones, where the engine can change its pitch
SHIFT_RANGE = (-1.5, 1.5)  # semitones of resampling: pitch, formants and duration together
LEVEL_RANGE_DBFS = (-20.0, -1.0)  # peak level of the written clip
NOISE_RANGE, NOISE_W_RANGE = (0.3, 1.0), (0.4, 1.2)  # piper's (defaults 0.667 and 0.8)
EMPHASES = {"plain": "{}", "statement": "{}.", "exclaim": "{}!", "question": "{}?", "pause": None}
MAX_SPEED = 1.8  # faster than this a too-long rendering is dropped rather than squeezed
SILENCE_BELOW_PEAK_DB = 40.0  # trimmed: leading/trailing 10 ms frames this far below the loudest
FADE_S = 0.005
MAX_ROUNDS = 5
NEAR_MISSES = 12  # phrases, by default, whose clips train as unknown beside a wake word's


class SynthesisError(ValueError):
    """Bad input or nothing to synthesise with; stated in the user's terms."""


@dataclass(frozen=True)
class Placement:
    """What happens after the engine: resampling shift, peak level and position within the clip."""

    shift: float  # semitones
    level_dbfs: float
    position: float  # -1..1: from early to late within the allowed jitter around the centre


@dataclass
class Summary:
    engines: dict[str, int]  # engine -> distinct voices
    missing: dict[str, str]
    written: int = 0
    sped_up: int = 0  # written after a faster re-rendering
    dropped: int = 0  # too long even at MAX_SPEED, or the engine failed: replaced by new clips
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    manifest: Path | None = None


def normalize_phrase(phrase: str) -> str:
    """The label: lower case, single spaces; a SynthesisError naming the phrase if it cannot be one."""
    label = " ".join(str(phrase).lower().split())
    try:
        return check_label(label)
    except ValueError:
        raise SynthesisError(f"phrase {phrase!r}: use letters, digits, apostrophes, '-' or '_', "
                             "words separated by spaces") from None


def emphasize(phrase: str, emphasis: str) -> str:
    """The text an engine reads: punctuation changes intonation and stress in every engine."""
    words = phrase.split()
    if EMPHASES[emphasis] is None:  # a pause after the first word, or a trailing ellipsis for one word
        return f"{words[0]}, {' '.join(words[1:])}" if len(words) > 1 else f"{phrase}..."
    return EMPHASES[emphasis].format(phrase)


def plan(phrases: list[str], engines: list[Engine], seed: int, indices: range) -> list[tuple[Rendering, Placement]]:
    """Clip i: engine i mod E, phrase (i div E) mod P, everything else drawn from (seed, i)."""
    planned = []
    for i in indices:
        rng = np.random.default_rng([seed, i])
        engine = engines[i % len(engines)]
        phrase = phrases[(i // len(engines)) % len(phrases)]
        emphasis = list(EMPHASES)[rng.integers(len(EMPHASES))]
        rendering = Rendering(
            index=i, phrase=phrase, text=emphasize(phrase, emphasis), engine=engine.name,
            voice=engine.voices[rng.integers(len(engine.voices))], speed=round(rng.uniform(*SPEED_RANGE), 4),
            pitch=round(rng.uniform(*PITCH_RANGE), 3), noise=round(rng.uniform(*NOISE_RANGE), 4),
            noise_w=round(rng.uniform(*NOISE_W_RANGE), 4),
        )
        placement = Placement(shift=round(rng.uniform(*SHIFT_RANGE), 3), level_dbfs=round(rng.uniform(*LEVEL_RANGE_DBFS), 2),
                              position=round(rng.uniform(-1, 1), 4))
        planned.append((rendering, placement))
    return planned


def clip_name(item: Rendering) -> str:
    voice = re.sub(r"[^a-z0-9]+", "-", item.voice.lower()).strip("-")
    return f"tts-{item.engine}-{voice}_nohash_{item.index}.wav"


def trim_silence(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The span from the first to the last 10 ms frame within SILENCE_BELOW_PEAK_DB of the loudest."""
    frame = sample_rate // 100
    frames = len(audio) // frame
    if frames == 0:
        return audio[:0]
    energy = np.mean(audio[: frames * frame].reshape(frames, frame).astype(np.float64) ** 2, axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (-SILENCE_BELOW_PEAK_DB / 10))
    if energy.max() <= 1e-10 or len(loud) == 0:
        return audio[:0]
    return audio[loud[0] * frame : (loud[-1] + 1) * frame]


def to_clip(audio: np.ndarray, rate: int, placement: Placement, cfg: FeatureConfig) -> tuple[np.ndarray | None, float]:
    """(the 1 s int16 clip, or None if the speech is longer than a clip; seconds of speech)."""
    # Reading the audio as if recorded at rate * 2^(shift/12) raises pitch and formants by `shift`.
    speech = soxr.resample(audio.astype(np.float32), rate * pitch_ratio(placement.shift), cfg.sample_rate, quality="HQ")
    speech = trim_silence(speech, cfg.sample_rate)
    seconds = len(speech) / cfg.sample_rate
    if len(speech) == 0 or len(speech) > cfg.clip_samples:
        return None, seconds
    fade = min(int(FADE_S * cfg.sample_rate), len(speech) // 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / max(fade, 1))  # raised cosine: no click at the cut
    speech = speech.copy()
    speech[:fade] *= ramp
    speech[len(speech) - fade :] *= ramp[::-1]
    speech *= 10 ** (placement.level_dbfs / 20) / max(np.abs(speech).max(), 1e-9)
    slack = cfg.clip_samples - len(speech)
    jitter = min(slack / 2, 0.1 * cfg.sample_rate)  # near the centre, as in Speech Commands
    start = int(round(slack / 2 + placement.position * jitter))
    clip = np.zeros(cfg.clip_samples, np.float32)
    clip[start : start + len(speech)] = speech
    return to_int16(clip), seconds


def _render_chunk(engine: Engine, chunk: list, seed: int, out_dir: Path, cfg: FeatureConfig) -> list[tuple]:
    """Render, fit and write one batch: [(rendering, placement, manifest entry | None, seconds | error)]."""
    first = chunk[0][0].index
    batch_seed = int(np.random.default_rng([seed, first, 1]).integers(2**31))
    try:
        audios = render_batch(engine, [rendering for rendering, _ in chunk], batch_seed)
    except EngineError as error:
        return [(rendering, placement, None, str(error)) for rendering, placement in chunk]
    results = []
    for (rendering, placement), (audio, rate) in zip(chunk, audios):
        clip, seconds = to_clip(audio, rate, placement, cfg)
        entry = None
        if clip is not None:
            path = out_dir / rendering.phrase / clip_name(rendering)
            soundfile.write(str(path), clip, cfg.sample_rate, subtype="PCM_16")
            entry = {"file": f"{rendering.phrase}/{path.name}", **asdict(rendering), **asdict(placement),
                     "speech_seconds": round(seconds, 4), "seed": [seed, rendering.index]}
        results.append((rendering, placement, entry, round(seconds, 4)))
    return results


def _run_round(planned: list, engines: list[Engine], seed: int, out_dir: Path, cfg: FeatureConfig, jobs: int,
               progress: Progress) -> list[tuple]:
    """Every planned clip once, in parallel batches of one engine each; results in plan order."""
    by_name = {engine.name: engine for engine in engines}
    chunks = []
    for engine in engines:
        mine = [pair for pair in planned if pair[0].engine == engine.name]
        chunks += [mine[i : i + engine.batch] for i in range(0, len(mine), engine.batch)]
    chunks.sort(key=lambda chunk: -by_name[chunk[0][0].engine].batch)  # the long batches first: they overlap the rest
    results = []
    with ThreadPoolExecutor(jobs) as pool:  # engines are subprocesses or release the GIL (onnxruntime, soxr)
        futures = [pool.submit(_render_chunk, by_name[chunk[0][0].engine], chunk, seed, out_dir, cfg) for chunk in chunks]
        for future in as_completed(futures):
            done = future.result()
            results += done
            progress.add(sum(entry is not None for _, _, entry, _ in done))
    return sorted(results, key=lambda result: result[0].index)


def prepare_out_dir(out_dir: Path, labels: list[str], overwrite: bool) -> None:
    """Label folders ready to write; refuses to mix with an earlier run's clips unless `overwrite`."""
    try:
        for label in labels:
            (out_dir / label).mkdir(parents=True, exist_ok=True)
        probe = out_dir / labels[0] / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise SynthesisError(f"--out {out_dir}: cannot write there ({error.strerror or error})") from None
    old = [p for label in labels for p in (out_dir / label).iterdir() if is_synthetic(p)]
    if old and not overwrite:
        raise SynthesisError(f"--out {out_dir}: {len(old)} synthetic clips from an earlier run are in {old[0].parent}; "
                             "pass --overwrite to replace them")
    for path in old:
        path.unlink()


def render_all(phrases: list[str], engines: list[Engine], count: int, seed: int, out_dir: Path, cfg: FeatureConfig,
               jobs: int, summary: Summary, log) -> list[dict]:
    """Rounds until `count` clips are written: too-long renderings once more, just fast enough; the rest replaced."""
    entries, next_index = [], count
    pending = plan(phrases, engines, seed, range(count))
    progress = Progress("synthesising", count, log)
    for _ in range(MAX_ROUNDS):
        retry, before = [], len(entries)
        for rendering, placement, entry, outcome in _run_round(pending, engines, seed, out_dir, cfg, jobs, progress):
            if entry is not None:
                entries.append(entry)
                summary.sped_up += rendering.sped_up
                continue
            needed = rendering.speed * outcome * cfg.sample_rate / cfg.clip_samples * 1.05 if isinstance(outcome, float) else 0
            if 0 < needed <= MAX_SPEED and not rendering.sped_up:
                retry.append((replace(rendering, speed=round(needed, 4), sped_up=True), placement))
                continue
            summary.dropped += 1
            if isinstance(outcome, str) and len(summary.failures) < 5:
                summary.failures.append(outcome)
        shortfall = count - len(entries) - len(retry)
        if (shortfall <= 0 and not retry) or (len(entries) == before and not retry):  # done, or nothing fits
            break
        pending = retry + plan(phrases, engines, seed, range(next_index, next_index + max(shortfall, 0)))
        next_index += max(shortfall, 0)
    progress(progress.done, final=True)
    if not entries:
        too_long = f"every rendering is longer than {cfg.clip_samples / cfg.sample_rate:g} s even at {MAX_SPEED}x speed"
        why = summary.failures[0] if summary.failures else too_long
        raise SynthesisError(f"phrase {phrases[0]!r}: no clip written: {why}")
    return entries


def synthesize(
    phrases: list[str],
    out_dir: Path,
    count: int = 500,
    seed: int = 1,
    jobs: int | None = None,
    engine_names: tuple[str, ...] = ENGINES,
    piper_models: tuple[Path, ...] = (),
    role: str = "positive",
    overwrite: bool = False,
    about: dict | None = None,
    cfg: FeatureConfig = FeatureConfig(),
    log=sys.stderr,
) -> Summary:
    """Write `count` clips spread over `phrases` (each phrase its own label folder) and a manifest.

    `about` goes into the manifest; its "wake_word", if given, names the manifest (near misses' runs).
    """
    if not isinstance(count, int) or count < 1:
        raise SynthesisError(f"--count {count!r}: must be a whole number of at least 1")
    jobs = os.cpu_count() or 1 if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise SynthesisError(f"--jobs {jobs!r}: must be at least 1")
    phrases = [normalize_phrase(p) for p in phrases]
    if not phrases:
        raise SynthesisError("no phrase given")
    out_dir = Path(out_dir)
    try:
        engines, missing = find_engines(tuple(engine_names), tuple(piper_models))
    except ValueError as error:
        raise SynthesisError(str(error)) from None
    summary = Summary({e.name: len(e.voices) for e in engines}, missing)
    log.write("engines: " + (", ".join(f"{e.name} ({len(e.voices)} voices)" for e in engines) or "none") + "\n")
    for note in missing.values():
        log.write(f"skipped {note}\n")
    if not engines:
        raise SynthesisError("no text-to-speech engine found: " + "; ".join(missing.values()))
    prepare_out_dir(out_dir, phrases, overwrite)

    started = time.monotonic()
    entries = render_all(phrases, engines, count, seed, out_dir, cfg, jobs, summary, log)
    summary.written, summary.seconds = len(entries), time.monotonic() - started
    summary.manifest = write_manifest(out_dir, phrases, role, seed, count, summary, entries, about or {})
    return summary


def sampling_ranges() -> dict:
    """The ranges each clip's rendering is drawn from, as its manifest records them (JSON: lists)."""
    return {"speed": list(SPEED_RANGE), "pitch": list(PITCH_RANGE), "shift": list(SHIFT_RANGE),
            "level_dbfs": list(LEVEL_RANGE_DBFS), "noise": list(NOISE_RANGE), "noise_w": list(NOISE_W_RANGE),
            "max_speed": MAX_SPEED}


def write_manifest(out_dir: Path, phrases: list[str], role: str, seed: int, count: int, summary: Summary, entries: list,
                   about: dict) -> Path:
    """Everything needed to reproduce the clips; no times or paths of this machine, so it is reproducible too."""
    stem = about.get("wake_word", phrases[0])
    path = out_dir / (f"{stem}.synthesis.json" if role == "positive" else f"{stem}.{role}.json")
    manifest = {
        "role": role,  # "positive": the label is the phrase; "confusable" (near misses), "other": the unknown class
        **about, "phrases": phrases, "seed": seed, "count_requested": count, "written": summary.written,
        "sped_up": summary.sped_up, "dropped": summary.dropped, "engines": summary.engines, "missing": summary.missing,
        "ranges": sampling_ranges(),
        "clips": sorted(entries, key=lambda entry: entry["index"]),
    }
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def near_misses_of(phrase: str, limit: int, jobs: int, log=sys.stderr) -> tuple[list[str], dict]:
    """The near-miss phrases of a wake word, each named in the log, and what the manifest records of them."""
    misses = near_miss_phrases(phrase, limit, jobs)
    if not misses:
        raise SynthesisError(f"phrase {phrase!r}: no near miss passes the rule")
    for miss in misses:
        log.write(f"near miss: {miss.phrase!r} ({miss.kind}, /{miss.phonemes}/, distance {miss.distance})\n")
    return [miss.phrase for miss in misses], {"wake_word": phrase, "near_misses": [asdict(miss) for miss in misses]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.synthesize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--phrase", required=True, help='the wake word or phrase, e.g. "hey nano" (the label folder)')
    parser.add_argument("--out", required=True, type=Path, help="folder to write DIR/<phrase>/*.wav and the manifest into")
    parser.add_argument("--count", type=int, default=500, help="clips to write in all (default 500)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel renderings (default: all cores)")
    parser.add_argument("--confusable", action="store_true", help="synthesise near misses of the phrase instead, as negatives")
    parser.add_argument("--near-misses", type=int, default=NEAR_MISSES,
                        help=f"with --confusable: how many near-miss phrases (default {NEAR_MISSES})")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES, help="engines to use, if installed")
    parser.add_argument("--piper-model", nargs="*", type=Path, default=[],
                        help="more piper voices: local .onnx files (with their .json)")
    parser.add_argument("--overwrite", action="store_true", help="replace synthetic clips of an earlier run in the same folders")
    args = parser.parse_args(argv)
    try:
        phrases, role, about = [normalize_phrase(args.phrase)], "positive", {}
        if args.confusable:
            if args.near_misses < 1:
                raise SynthesisError(f"--near-misses {args.near_misses}: must be at least 1")
            (phrases, about), role = near_misses_of(phrases[0], args.near_misses, args.jobs), "confusable"
        summary = synthesize(phrases, args.out, args.count, args.seed, args.jobs, tuple(args.engines),
                             tuple(args.piper_model), role, args.overwrite, about)
    except SynthesisError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.written:,} clips to {args.out} in {summary.seconds:.1f} s "
          f"({summary.written / max(summary.seconds, 1e-9):.1f} clips/s); {summary.sped_up} re-rendered faster to fit 1 s, "
          f"{summary.dropped} dropped and replaced; manifest {summary.manifest}", file=sys.stderr)
    for failure in summary.failures:
        print(f"engine failure: {failure}", file=sys.stderr)
    return 0 if summary.written else 1


if __name__ == "__main__":
    sys.exit(main())
