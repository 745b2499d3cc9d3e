"""The core cross-compiled for the Nano 33 BLE Sense's Cortex-M4F, and (with pinned kissfft sources)
run under QEMU on a real clip, where its features must equal the host build's."""
import subprocess

import numpy as np
import pytest

from conftest import require_tool
from firmware_build import ARTIFACT, MANIFEST, available, core  # noqa: F401  (core is a fixture)
from host_tools import c_build
from host_tools.c_build import ARM_FLAGS, C_FLAGS, CORE_DIR, compile_checked
from host_tools.core import stream_features
from training.data import read_audio, to_int16
from training.features import quantize

QEMU_DIR = CORE_DIR / "qemu"


@pytest.fixture(scope="module")
def arm_gcc():
    return require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")


def arm_size(objects) -> dict[str, tuple[int, int, int]]:
    sizes = available(c_build.arm_size, objects)
    print("\n" + "\n".join(f"{name}: text={t} data={d} bss={b}" for name, (t, d, b) in sizes.items()))
    return sizes


def test_every_core_unit_cross_compiles_without_static_state(arm_gcc, tmp_path):
    sizes = arm_size(available(c_build.cross_compile_core, ARTIFACT, tmp_path))
    assert len(sizes) == len(c_build.CORE_SOURCES)
    for name, (text, data, bss) in sizes.items():
        # Code and constants only: every bit of state lives in structs the application owns.
        assert text > 0 and data == 0 and bss == 0, name


def compile_kissfft(out_dir) -> list:
    return available(c_build.cross_compile_kissfft, out_dir)


def test_kissfft_cross_compiles(arm_gcc, tmp_path):
    assert all(text > 0 for text, _, _ in arm_size(compile_kissfft(tmp_path)).values())


def test_features_on_cortex_m4f_under_qemu_equal_the_host_build(arm_gcc, core, shared_data, tmp_path):
    """The ring buffer, feature provider and kissfft, built for Cortex-M4F and run on QEMU's mps2-an386
    (semihosting for file I/O), stream a real clip to the same features as the host build."""
    qemu = require_tool("qemu-system-arm", "qemu-system-arm")
    kissfft = compile_kissfft(tmp_path)
    elf = tmp_path / "stream_features.elf"
    compile_checked([arm_gcc, *C_FLAGS, *ARM_FLAGS, "--specs=rdimon.specs", "-T", str(QEMU_DIR / "mps2_an386.ld"),
                     *available(c_build.core_includes, ARTIFACT), "-I", str(available(c_build.require_kissfft_sources)), *map(str, QEMU_DIR.glob("*.c")),
                     *(str(CORE_DIR / "src" / name) for name in ("audio_ring_buffer.c", "feature_provider.c")),
                     *map(str, kissfft), "-lm", "-o", str(elf)])
    clips = {"yes": shared_data / "micro_speech_testdata" / "yes_1000ms.wav",
             "8 kHz digit": sorted((shared_data / "negatives" / "free_spoken_digits_8khz").glob("*.wav"))[5]}
    for name, path in clips.items():
        samples = to_int16(read_audio(path, MANIFEST.features.sample_rate))
        samples.tofile(tmp_path / "clip.raw")
        result = subprocess.run(
            [qemu, "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none", "-kernel", str(elf),
             "-semihosting-config", "enable=on,target=native,arg=stream_features,arg=clip.raw,arg=features.f32"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        on_arm = np.fromfile(tmp_path / "features.f32", np.float32).reshape(-1, MANIFEST.features.n_mfcc)
        on_host, _ = stream_features(core, samples)
        assert result.stdout.split() == [f"frames={len(on_host)}", "overruns=0"]
        difference = np.abs(on_arm - on_host)
        identical = float(np.mean(on_arm == on_host))
        print(f"\n{name}: {len(on_arm)} frames, Cortex-M4F vs host: max |diff| {difference.max():.3g}, "
              f"bit-identical floats {identical:.2%}")
        assert difference.max() < 1e-3  # libm's log10f and code generation differ, the recipe does not
        scale, zero_point = MANIFEST.input.scale, MANIFEST.input.zero_point
        np.testing.assert_array_equal(quantize(on_arm, scale, zero_point), quantize(on_host, scale, zero_point))
