"""Footprint and timing of the firmware on the Nano 33 BLE Sense (nRF52840, Cortex-M4F at 64 MHz).

    python -m host_tools.footprint          (make firmware-benchmark)

Measured here: flash of the core, kissfft and the model (cross-compiled with the board's flags);
static RAM of the application's state and tensor arena (the settings of firmware/src/app_config.h);
instructions per 20 ms hop of the feature pipeline (the core on Cortex-M4F under QEMU, counted with
-icount); multiply-accumulates per inference (counted from the exported model). Estimated, and
printed as such: cycles from instructions and MACs (stated cycles-per-instruction and per-MAC
assumptions), the duty cycle they imply, and what TFLM and the Arduino Mbed core add (from
micro_speech's published footprint on this board). A benchmark that prints figures, not a test.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from host_tools import firmware_core
from host_tools.firmware_core import ARM_FLAGS, C_FLAGS, CORE_DIR, FIRMWARE_DIR, GENERATED_DIR, INCLUDES, SETTINGS, app_setting

CLOCK_HZ = 64_000_000
HOP_S = SETTINGS["KWS_HOP_SAMPLES"] / SETTINGS["KWS_SAMPLE_RATE"]
QEMU_DIR = CORE_DIR / "qemu"
# Cortex-M4F: single-cycle ALU and FPU ops, 2-cycle loads (pipelined in sequences), 1-3 cycle
# branches, 14-cycle VDIV/VSQRT, flash through the nRF52840's instruction cache: about 1.3 cycles
# per instruction for this float DSP code (assumption, no board measurement).
CYCLES_PER_INSTRUCTION = 1.3
# CMSIS-NN int8 kernels on Cortex-M4 (SMLAD does two 16-bit MACs a cycle, plus loads, requantization
# and loop overhead): about 4 cycles per MAC for this DS-CNN, 3 to 8 across published M4 results
# (assumption; depthwise layers are the least efficient).
CYCLES_PER_MAC = (3.0, 4.0, 8.0)
# Published figures of TFLM's micro_speech example on the Nano 33 BLE Sense (Arduino IDE build
# report): about 166 KB flash and 54 KB RAM, of which its model is 18,712 B and its arena 10 KB.
MICRO_SPEECH = {"flash": 166_000, "ram": 54_000, "model": 18_712, "arena": 10 * 1024}


def model_bytes_on_flash(out_dir: Path) -> int:
    """text + data of the generated kws_model_data.cc compiled for the board."""
    gxx = firmware_core.find_tool("arm-none-eabi-g++", "gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    obj = out_dir / "kws_model_data.o"
    firmware_core.compile_checked([gxx, *ARM_FLAGS, "-I", str(GENERATED_DIR), "-c",
                                   str(GENERATED_DIR / "kws_model_data.cc"), "-o", str(obj)])
    text, data, _ = firmware_core.arm_size([obj])[obj.name]
    return text + data


# The static objects of firmware/src (main.cpp, model_runner.cpp), declared with the same settings.
STATE_PROBE = """#include "app_config.h"
#include "kws_pipeline.h"
int16_t ring_storage[KWS_AUDIO_RING_SAMPLES];
kws_pipeline pipeline;
int16_t pdm_block[KWS_PDM_BLOCK_SAMPLES];
_Alignas(16) uint8_t arena[KWS_ARENA_BYTES + KWS_ARENA_MARGIN_BYTES];
"""


def static_ram(out_dir: Path) -> tuple[int, int]:
    """(bytes of the application's static state without the arena, arena bytes), compiled for the board."""
    gcc = firmware_core.find_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    probe = out_dir / "state_probe.c"
    probe.write_text(STATE_PROBE)
    obj = out_dir / "state_probe.o"
    firmware_core.compile_checked([gcc, *C_FLAGS, *ARM_FLAGS, "-fno-common", *INCLUDES, "-I", str(FIRMWARE_DIR / "src"),
                                   "-I", str(firmware_core.KISSFFT_HEADERS), "-c", str(probe), "-o", str(obj)])
    _, data, bss = firmware_core.arm_size([obj])[obj.name]
    arena = app_setting("KWS_ARENA_MARGIN_BYTES") + SETTINGS["KWS_ARENA_BYTES"]
    return data + bss - arena, arena


def instructions_per_hop(out_dir: Path) -> dict[str, int]:
    """Instructions of the ring buffer, one feature frame, its FFT and the int8 window, per hop, on
    Cortex-M4F under QEMU (mps2-an386) with -icount."""
    gcc = firmware_core.find_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    qemu = firmware_core.find_tool("qemu-system-arm", "qemu-system-arm")
    kissfft = firmware_core.cross_compile_kissfft(out_dir)
    elf = out_dir / "bench_frame.elf"
    units = ("audio_ring_buffer.c", "feature_provider.c", "feature_window.c")
    firmware_core.compile_checked([gcc, *C_FLAGS, *ARM_FLAGS, "--specs=rdimon.specs", "-T", str(QEMU_DIR / "mps2_an386.ld"),
                                   *INCLUDES, "-I", str(firmware_core.require_kissfft_sources()),
                                   str(QEMU_DIR / "startup.c"), str(QEMU_DIR / "bench" / "bench_frame.c"),
                                   *(str(CORE_DIR / "src" / unit) for unit in units), *map(str, kissfft),
                                   "-lm", "-o", str(elf)])
    result = subprocess.run([qemu, "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
                             "-icount", "shift=0", "-kernel", str(elf), "-semihosting-config", "enable=on,target=native"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise firmware_core.FirmwareBuildError(f"QEMU benchmark failed: {result.stdout}{result.stderr}")
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", result.stdout)}


def multiply_accumulates(model: bytes) -> int:
    """MACs of one inference: convolutions (depthwise too) and fully connected layers of the model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not a figure
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    flat = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = flat.subgraphs[0]
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    total = 0
    for op in graph.operators:
        code = flat.operatorCodes[op.opcodeIndex]
        name = codes[max(code.builtinCode, code.deprecatedBuiltinCode)]
        weights = np.array(graph.tensors[op.inputs[1]].shape) if len(op.inputs) > 1 else None
        outputs = int(np.prod(graph.tensors[op.outputs[0]].shape))
        if name == "CONV_2D":  # weights [out_ch, kh, kw, in_ch]
            total += outputs * int(np.prod(weights[1:]))
        elif name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, out_ch]
            total += outputs * int(weights[1] * weights[2])
        elif name == "FULLY_CONNECTED":  # weights [out, in]
            total += outputs * int(weights[1])
    return total


def kb(value: float) -> str:
    return f"{value / 1000:.1f} KB"


def main() -> int:
    try:
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch)
            core_units = firmware_core.arm_size(firmware_core.cross_compile_core(out))
            fft_units = firmware_core.arm_size(firmware_core.cross_compile_kissfft(out))
            model_flash = model_bytes_on_flash(out)
            state_ram, arena = static_ram(out)
            hop = instructions_per_hop(out)
    except firmware_core.FirmwareBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    core_flash = sum(t + d for t, d, _ in core_units.values())
    fft_flash = sum(t + d for t, d, _ in fft_units.values())
    ours_flash = core_flash + fft_flash + model_flash
    ours_ram = state_ram + arena
    macs = multiply_accumulates(firmware_core.exported_model())
    every = app_setting("KWS_INFERENCE_EVERY_HOPS")
    hop_instructions = hop["ring"] + hop["frame"] + hop["window"]
    hop_cycles = hop_instructions * CYCLES_PER_INSTRUCTION
    low, mid, high = (macs * c for c in CYCLES_PER_MAC)
    budget = CLOCK_HZ * HOP_S
    platform_flash = MICRO_SPEECH["flash"] - MICRO_SPEECH["model"]
    platform_ram = MICRO_SPEECH["ram"] - MICRO_SPEECH["arena"]

    print("Footprint and timing, Arduino Nano 33 BLE Sense (nRF52840: 1 MB flash, 256 KB RAM, Cortex-M4F 64 MHz)")
    print(f"model {SETTINGS['KWS_MODEL_SHA256'][:16]}, labels {','.join(SETTINGS['KWS_LABELS'])}\n")
    print("MEASURED (arm-none-eabi-gcc " + " ".join(ARM_FLAGS) + "):")
    print(f"  flash: core {core_flash:,} B (incl. feature tables) + kissfft {fft_flash:,} B + model {model_flash:,} B"
          f" = {ours_flash:,} B")
    print(f"  static RAM: ring buffer, pipeline (features, window, recognizer, line) and PDM buffer {state_ram:,} B"
          f" + tensor arena {arena:,} B (KWS_ARENA_BYTES {SETTINGS['KWS_ARENA_BYTES']:,} + margin) = {ours_ram:,} B")
    print(f"  instructions per 20 ms hop (QEMU -icount, Cortex-M4F build): ring buffer {hop['ring']:,}, "
          f"feature frame {hop['frame']:,} (of which FFT {hop['fft']:,}; window, mel, log, DCT the rest), "
          f"int8 window {hop['window']:,}; total {hop_instructions:,}")
    print(f"  multiply-accumulates per inference (counted from the model): {macs:,}\n")
    print(f"ESTIMATED (assumptions: {CYCLES_PER_INSTRUCTION} cycles/instruction; CMSIS-NN int8 "
          f"{CYCLES_PER_MAC[1]:g} cycles/MAC, range {CYCLES_PER_MAC[0]:g}-{CYCLES_PER_MAC[2]:g}):")
    print(f"  features: {hop_cycles:,.0f} cycles per hop = {hop_cycles / CLOCK_HZ * 1e3:.2f} ms "
          f"= {hop_cycles / budget:.1%} of each 20 ms hop")
    print(f"  inference: {mid:,.0f} cycles = {mid / CLOCK_HZ * 1e3:.0f} ms "
          f"(range {low / CLOCK_HZ * 1e3:.0f}-{high / CLOCK_HZ * 1e3:.0f} ms), every {every} hops "
          f"({every * HOP_S * 1e3:.0f} ms)")
    duty = (hop_cycles + mid / every) / budget
    duty_high = (hop_cycles + high / every) / budget
    print(f"  duty cycle: {duty:.1%} of the CPU (worst assumption {duty_high:.1%}); the rest can sleep")
    print(f"  TFLM + Arduino Mbed core (from micro_speech's published {kb(MICRO_SPEECH['flash'])} flash / "
          f"{kb(MICRO_SPEECH['ram'])} RAM minus its model and arena): ~{kb(platform_flash)} flash, "
          f"~{kb(platform_ram)} RAM")
    print(f"  whole firmware: ~{kb(platform_flash + ours_flash)} flash, ~{kb(platform_ram + ours_ram)} RAM "
          f"(micro_speech: ~{kb(MICRO_SPEECH['flash'])}, ~{kb(MICRO_SPEECH['ram'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
