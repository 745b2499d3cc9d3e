"""Room and microphone augmentation (training/acoustics.py): measured on tones and on real audio."""
from __future__ import annotations

import numpy as np
import pytest

from training.acoustics import augment, microphone, microphone_response, reverberate, room_impulse_responses
from training.config import AcousticConfig
from training.data import read_audio

RATE = 16000


def schroeder_rt60(ir: np.ndarray) -> float:
    """RT60 from the Schroeder energy decay curve, fitted between -5 and -25 dB (T20 x 3)."""
    edc = np.cumsum((ir.astype(np.float64) ** 2)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    fit = (edc_db <= -5) & (edc_db >= -25)
    slope = np.polyfit(np.flatnonzero(fit) / RATE, edc_db[fit], 1)[0]
    return -60 / slope


@pytest.mark.parametrize("rt60", [0.25, 0.5, 0.8])
def test_room_impulse_responses_decay_at_the_configured_rt60(rt60):
    rng = np.random.default_rng(0)
    n = 8
    irs = room_impulse_responses(np.full(n, rt60), np.full(n, 0.0), np.full(n, 0.005), rng)
    measured = np.mean([schroeder_rt60(ir[1:]) for ir in irs])  # the tail alone, without the direct path
    assert measured == pytest.approx(rt60, rel=0.1)
    assert np.all(irs[:, 0] == 1.0) and np.all(irs[:, 1:int(0.005 * RATE)] == 0)  # direct path, then a gap
    tail_energy = np.sum(irs[:, 1:].astype(np.float64) ** 2, axis=1)
    assert np.allclose(10 * np.log10(1 / tail_energy), 0.0, atol=1e-3)  # DRR as drawn (0 dB)


def decay_rate_db_per_s(audio: np.ndarray, start: int) -> float:
    """Slope of the 10 ms energy envelope from `start` down 30 dB."""
    frames = audio[start : start + (len(audio) - start) // 160 * 160].reshape(-1, 160)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    below = np.flatnonzero(level < level[0] - 30)
    end = below[0] if len(below) else len(level)
    return float(np.polyfit(np.arange(end) * 0.01, level[:end], 1)[0])


def test_reverb_lengthens_the_decay_of_a_tone_burst_as_configured():
    burst = np.zeros((4, RATE), np.float32)
    burst[:, 1600:3200] = np.sin(2 * np.pi * 1000 * np.arange(1600) / RATE)
    for rt60 in (0.3, 0.6):
        wet = reverberate(burst, np.random.default_rng(1), (rt60, rt60), (0.0, 0.0))
        slopes = [decay_rate_db_per_s(row, 3200 + 80) for row in wet]
        assert np.mean(slopes) == pytest.approx(-60 / rt60, rel=0.15)  # 60 dB per RT60
    assert np.all(burst[:, 3200 + 80 :] == 0)  # dry: nothing after the burst


def test_reverb_on_real_speech_fills_the_silence_after_the_word(mini_set):
    def speech_end(audio):
        return np.flatnonzero(np.abs(audio) > 0.03 * np.abs(audio).max())[-1]  # -30 dB

    clips = (read_audio(path, RATE) for path in sorted((mini_set / "yes").glob("*.wav")))
    clip = next(c for c in clips if speech_end(c) < 0.7 * RATE)[None, :]  # a word with its recording's quiet after it
    speech_end = speech_end(clip[0])
    after = slice(speech_end + 800, speech_end + 4000)  # 50-250 ms after the word ends

    def late_energy_db(audio):
        return 10 * np.log10(np.mean(audio[0, after].astype(np.float64) ** 2) / np.mean(audio[0].astype(np.float64) ** 2) + 1e-12)

    levels = [late_energy_db(clip)] + [late_energy_db(reverberate(clip, np.random.default_rng(2), (rt60, rt60), (0.0, 0.0)))
                                      for rt60 in (0.4, 0.8)]
    assert levels[0] < levels[1] < levels[2]  # longer rooms leave more energy after the word
    assert levels[1] - levels[0] > 3 and levels[2] - levels[0] > 10  # measured: +4.8 and +15.5 dB
    rms = np.sqrt(np.mean(clip.astype(np.float64) ** 2))
    wet = reverberate(clip, np.random.default_rng(2))
    assert np.sqrt(np.mean(wet.astype(np.float64) ** 2)) == pytest.approx(rms, rel=1e-3)  # level kept


def tone(frequency: float, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * frequency * np.arange(int(seconds * RATE)) / RATE).astype(np.float32)


@pytest.mark.parametrize("frequency", [20.0, 50.0, 1000.0, 4000.0, 7000.0, 7900.0])
def test_microphone_attenuates_tones_as_its_response_states(frequency):
    tones = np.stack([tone(frequency)] * 2)
    out = microphone(tones, np.random.default_rng(3), (50.0, 50.0), (7000.0, 7000.0))
    middle = slice(4000, 12000)  # past the high-pass's settling, away from the clip's ends
    gain_db = 10 * np.log10(np.mean(out[:, middle] ** 2) / np.mean(tones[:, middle] ** 2))
    stated = 20 * np.log10(abs(microphone_response(np.array([frequency]), np.array([50.0]), np.array([7000.0]))[0, 0]))
    assert gain_db == pytest.approx(stated, abs=0.2)


def test_default_microphone_meets_the_stated_out_of_band_attenuation():
    rng = np.random.default_rng(4)
    cfg = AcousticConfig()
    for frequency, at_least_db in [(20.0, 7.8), (10.0, 19.1), (7900.0, 4.5)]:
        out = microphone(np.stack([tone(frequency)] * 16), rng, cfg.highpass_range_hz, cfg.lowpass_range_hz)
        gain_db = 10 * np.log10(np.mean(out[:, 4000:12000] ** 2, axis=1) / 0.5)
        assert np.all(gain_db <= -at_least_db), (frequency, gain_db)
    out = microphone(np.stack([tone(1000.0)] * 16), rng, cfg.highpass_range_hz, cfg.lowpass_range_hz)
    assert np.allclose(10 * np.log10(np.mean(out[:, 4000:12000] ** 2, axis=1) / 0.5), 0.0, atol=0.06)


def band_energy(audio: np.ndarray, low: float, high: float, weight=None) -> float:
    """Energy of a Hann-windowed segment between low and high Hz, optionally weighted per frequency."""
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64) * np.hanning(len(audio)))) ** 2
    frequencies = np.fft.rfftfreq(len(audio), 1 / RATE)
    band = (frequencies >= low) & (frequencies < high)
    return float(np.sum(spectrum[band] * (1 if weight is None else weight(frequencies[band]))))


@pytest.mark.parametrize("noise", ["white_noise.wav", "running_tap.wav", "exercise_bike.wav"])
def test_microphone_on_real_recordings(mini_set, noise):
    """Out-of-band energy of real noise falls by what the stated response predicts for that noise."""
    audio = read_audio(mini_set / "_background_noise_" / noise, RATE)[: 4 * RATE].reshape(4, RATE)
    out = microphone(audio, np.random.default_rng(5), (50.0, 50.0), (7000.0, 7000.0))
    inner = slice(2000, RATE - 2000)  # leave out the edges, where a filter starts and stops

    def power_gain(frequencies):
        return np.abs(microphone_response(frequencies, np.array([50.0]), np.array([7000.0]))[0]) ** 2

    for low, high, at_least_db in [(10, 25, 12.0), (25, 40, 4.0), (300, 3400, -0.01), (7800, 8000, 8.0)]:
        before = sum(band_energy(a[inner], low, high) for a in audio)
        predicted = 10 * np.log10(sum(band_energy(a[inner], low, high, power_gain) for a in audio) / before)
        measured = 10 * np.log10(sum(band_energy(o[inner], low, high) for o in out) / before)
        assert measured == pytest.approx(predicted, abs=0.5), (noise, low, high)
        assert measured <= -at_least_db, (noise, low, high)


def test_augmentation_is_deterministic_and_keeps_shape():
    audio = np.random.default_rng(6).standard_normal((40, RATE)).astype(np.float32) * 0.1
    first = augment(audio, np.random.default_rng(7))
    assert first.shape == audio.shape and first.dtype == np.float32
    assert np.array_equal(first, augment(audio, np.random.default_rng(7)))
    assert np.array_equal(first, augment(audio, np.random.default_rng(7), workers=2))  # FFT threads change nothing
    assert not np.array_equal(first, augment(audio, np.random.default_rng(8)))
    untouched = augment(audio, np.random.default_rng(7), AcousticConfig(reverb_probability=0, microphone_probability=0))
    assert np.array_equal(untouched, audio)
    only_rooms = AcousticConfig(reverb_probability=1, microphone_probability=0)
    assert np.all(np.any(augment(audio, np.random.default_rng(7), only_rooms) != audio, axis=1))
    half = np.any(augment(audio, np.random.default_rng(7), AcousticConfig(microphone_probability=0)) != audio, axis=1)
    assert 0 < half.sum() < len(audio)  # reverb_probability 0.5
    assert augment(audio[:0], np.random.default_rng(7)).shape == (0, RATE)  # an empty batch is fine
