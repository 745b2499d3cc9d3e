"""Flash and RAM of the board firmware per component, from the linker map of the offline build.

    sizes = component_sizes(elf, map_file)      # {"tflm": Footprint(flash, ram), ...}
    report = size_report(elf, map_file)         # what build/firmware/size.json holds

The offline link (host_tools/board_build.py) has everything but Mbed OS: Arduino's precompiled libmbed.a is
not in the kit. Every byte of the image is attributed to the input section it came from (the map lists each
with its size and object file), so the components add up to the ELF's sections exactly; Mbed OS's share is
stated from a published build, named in the report.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from host_tools.c_build import find_tool

# Regions Mbed OS's linker script reserves (the heap is all RAM left over); not code or data of any component.
RESERVED_SECTIONS = (".heap", ".stack", ".crash_data_ram")
# Arduino core, variant and the core's bundled libraries the firmware links (PDM; Wire/SPI when pulled in).
ARDUINO_ARCHIVES = ("libFrameworkArduino.a", "libFrameworkArduinoVariant.a", "libPDM.a", "libWire.a", "libSPI.a")
TOOLCHAIN_PATHS = ("/lib/gcc/arm-none-eabi/", "/arm-none-eabi/lib/")
# Published figures (not measured here). Mbed OS: a PlatformIO build report of Mbed OS 6.6's blinky on this
# board (framework = mbed: RTOS, no USB); Arduino's libmbed.a adds the USB CDC stack behind Serial and the
# drivers the core uses, so this is a lower bound of its share.
MBED_OS_PUBLISHED = {
    "flash_bytes": 36_352, "ram_bytes": 11_032,
    "source": "platformio/platform-nordicnrf52 pull request #113 (2021-03-21): `framework = mbed`, board nano33ble, "
              "Mbed OS 6.6 blinky with ThisThread::sleep_for, build report 'RAM 11032 bytes, Flash 36352 bytes'",
    "caveat": "published, not measured here; a lower bound: Arduino's libmbed.a adds USB CDC (Serial) and drivers",
}
MICRO_SPEECH_PUBLISHED = {
    "flash_bytes": 166_000, "ram_bytes": 54_000,
    "source": "TFLM micro_speech example on the Nano 33 BLE Sense (Arduino IDE build report, "
              "tensorflow/tflite-micro-arduino-examples): ~166 KB flash, ~54 KB RAM, 18.7 KB model, 10 KB arena",
}
# nRF52840 on the Nano 33 BLE Sense: 1 MB flash, of which the Arduino bootloader keeps the first 64 KB.
BOARD = {"flash_bytes": 0x100000, "application_flash_bytes": 0xF0000, "ram_bytes": 0x40000}


class SizeError(RuntimeError):
    """The map or ELF could not be read, or its bytes could not all be attributed."""


@dataclass
class Footprint:
    flash: int = 0
    ram: int = 0


@dataclass(frozen=True)
class OutputSection:
    address: int
    size: int
    in_flash: bool  # has contents in the image (text, rodata, the load image of .data)
    in_ram: bool  # writable at run time (.data, .bss)


def output_sections(elf: Path) -> dict[str, OutputSection]:
    """The ELF's allocated sections, from their header flags and types (readelf -S)."""
    readelf = find_tool("arm-none-eabi-readelf", "binutils-arm-none-eabi")
    text = subprocess.run([readelf, "-S", "-W", str(elf)], capture_output=True, text=True, check=True).stdout
    sections = {}
    for match in re.finditer(r"^\s*\[\s*\d+\]\s+(\S+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+\w+\s+([A-Z]*)", text, re.M):
        name, kind, address, size, flags = match.groups()
        if "A" in flags and name not in RESERVED_SECTIONS:
            sections[name] = OutputSection(int(address, 16), int(size, 16), kind != "NOBITS", "W" in flags)
    return sections


_INPUT = re.compile(r"^ (\S+)(?:\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)(?:\s+(\S.*))?)?$")
_CONTINUATION = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)(?:\s+(\S.*))?$")


@dataclass(frozen=True)
class InputSection:
    output: str
    name: str
    source: str  # object file, archive(member), or "" (linker fill)
    address: int
    size: int


def input_sections(map_file: Path) -> list[InputSection]:
    """Every input section of the map's memory map. GNU ld writes a long input-section name on a line of
    its own, and its address, size and file on the next."""
    lines = map_file.read_text(errors="replace").splitlines()
    try:
        start = lines.index("Linker script and memory map")
    except ValueError:
        raise SizeError(f"{map_file} is not a GNU ld map (no 'Linker script and memory map')") from None
    records, output, pending = [], None, None
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():
            output, pending = (line.split()[0] if line.startswith(".") else None), None
            continue
        found = _CONTINUATION.match(line) if pending else None
        if found:
            records.append(InputSection(output, pending, (found.group(3) or "").strip(), int(found.group(1), 16),
                                        int(found.group(2), 16)))
            pending = None
            continue
        found = _INPUT.match(line)
        if output and found and not found.group(1).startswith("*("):
            if found.group(2):
                records.append(InputSection(output, found.group(1), (found.group(4) or "").strip(),
                                            int(found.group(2), 16), int(found.group(3), 16)))
            else:
                pending = found.group(1)
    return records


def component(section: str, source: str) -> str:
    """Which part of the firmware an input section belongs to."""
    name = Path(source.split("(")[0]).name
    if section == "*fill*" or not source:
        return "padding"
    if name == "libChirale_TensorFLowLite.a":
        return "tflm"
    if name == "libkws_core.a":
        return "core"
    if name.startswith("libkissfft"):
        return "kissfft"
    if name == "kws_model_data.cc.o":
        return "model"
    if "g_arena" in section:
        return "arena"
    if "g_ring_storage" in section:
        return "ring"
    if "/src/" in source and name.endswith((".cpp.o", ".cc.o")):
        return "application"
    if name in ARDUINO_ARCHIVES:
        return "arduino_core"
    if name.startswith("libcc_310"):
        return "nrf_cryptocell"
    if name == "libmbed.a":
        return "mbed_os"
    if any(part in source for part in TOOLCHAIN_PATHS):
        return "c_cpp_runtime"
    return "unattributed"


def component_sizes(elf: Path, map_file: Path) -> dict[str, Footprint]:
    """Flash and RAM per component. Each byte of a section goes to the input section that starts at or before
    it; an input section's listed size is clipped at the next one's address, because merged string sections
    (.rodata.str1.*) keep their size before merging in the map. Bytes no input section claims are padding."""
    sections = output_sections(elf)
    by_output: dict[str, list[InputSection]] = {}
    for record in input_sections(map_file):
        if record.output in sections and record.size:
            by_output.setdefault(record.output, []).append(record)
    sizes: dict[str, Footprint] = {}
    for name, section in sections.items():
        records = sorted(by_output.get(name, []), key=lambda r: r.address)
        claimed = 0
        for record, following in zip(records, [*records[1:], None]):
            end = following.address if following else section.address + section.size
            size = max(0, min(record.size, end - record.address))
            kind = component(record.name, record.source)
            if kind != "padding":
                claimed += size
                _add(sizes.setdefault(kind, Footprint()), section, size)
        if claimed > section.size:
            raise SizeError(f"{map_file}: {name} holds {claimed} bytes of input sections, the ELF says "
                            f"{section.size}: the map does not belong to {elf}")
        _add(sizes.setdefault("padding", Footprint()), section, section.size - claimed)
    return sizes


def _add(footprint: Footprint, section: OutputSection, size: int) -> None:
    footprint.flash += size if section.in_flash else 0
    footprint.ram += size if section.in_ram else 0


def size_report(elf: Path, map_file: Path, toolchain: str) -> dict:
    """What build/firmware/size.json holds: measured components, their total, Mbed OS's published share."""
    sizes = component_sizes(elf, map_file)
    if "unattributed" in sizes:
        raise SizeError(f"{map_file}: {sizes['unattributed']} of the image come from objects host_tools/board_size.py "
                        "does not know (component()): name the library there")
    total = Footprint(sum(s.flash for s in sizes.values()), sum(s.ram for s in sizes.values()))
    whole = Footprint(total.flash + MBED_OS_PUBLISHED["flash_bytes"], total.ram + MBED_OS_PUBLISHED["ram_bytes"])
    return {
        "generated_by": "python -m host_tools.board_build offline (make firmware-offline); do not edit",
        "what": "flash and RAM of the Nano 33 BLE Sense firmware, linked offline without Mbed OS (libmbed.a is "
                "not in the kit); flash counts code, constants and the load image of .data, RAM .data and .bss",
        "toolchain": toolchain,
        "components": {name: asdict(sizes[name]) for name in sorted(sizes, key=lambda n: -sizes[n].flash)},
        "total_without_mbed_os": asdict(total),
        "mbed_os_published": MBED_OS_PUBLISHED,
        "whole_firmware_estimate": {**asdict(whole), "how": "measured total + Mbed OS's published share"},
        "micro_speech_published": MICRO_SPEECH_PUBLISHED,
        "board": BOARD,
    }
