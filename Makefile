# Everything a fresh machine needs: `make train`, `make test`. The virtual environment is made
# and refreshed (when pyproject.toml changes) by the targets that need it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TF_EXTRA ?= cpu# `gpu` installs the full tensorflow package instead of tensorflow-cpu

# Training settings, passed through to `python -m training.train` (see README).
DATA_DIR ?=# empty: $$KWS_DATA_DIR, else download Speech Commands into data/
PRESET ?= wakeword
KEYWORDS ?=# one wake word or phrase ("hey nano"); several: TRAIN_ARGS='--keywords yes no'
ARCH ?= dscnn
RUN ?=# empty: training makes a new build/PRESET-ARCH-TIME; evaluate uses build/latest
SET ?=# make export: SECTION.NAME=VALUE settings, e.g. detection.detection_threshold=0.6
TRAIN_ARGS ?=
TEST_ARGS ?=
CLIPS ?=# make firmware-check: a folder of WAV/FLAC/Ogg clips
# make host-benchmark: the audio the simulator streams (real speech from the shared data by default)
BENCH_AUDIO ?= $(or $(KWS_SHARED_DATA),../shared/data)/negatives/librispeech_ogg
# make benchmark: audio folders without the keyword for the wake-word stream (data/negatives when present),
# and anything else for host_tools.benchmark (e.g. BENCHMARK_ARGS="--epochs 80 --librispeech")
NEGATIVES ?= $(wildcard data/negatives)
BENCHMARK_ARGS ?=
# make scale-benchmark: the folder repeated into a full-size stand-in, and how many copies (TRAIN_ARGS pass through)
SCALE_DATA ?= $(or $(KWS_SHARED_DATA),../shared/data)/speech_commands_v0.02_mini
SCALE_COPIES ?= 30
SCALE_ARGS ?=
PIO := $(VENV)/bin/pio

# kissfft's C sources, pinned by SHA-256 (Debian's source package), for the Cortex-M4F builds.
KISSFFT_SRC := build/kissfft/kissfft-131.1.0

.PHONY: venv train evaluate export test kissfft clean firmware flash monitor firmware-check firmware-benchmark host-benchmark benchmark ablation synthesize scale-benchmark

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test,firmware,host,tts]"
	touch $@

venv: $(VENV)/.installed

train: venv
	$(PY) -m training.train --preset $(PRESET) --arch $(ARCH) $(if $(RUN),--out $(RUN)) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(KEYWORDS),--keywords "$(KEYWORDS)") $(TRAIN_ARGS)

evaluate: venv
	$(PY) -m training.evaluate --model $(or $(RUN),build/latest) \
		$(if $(TEST_SET),--test-set $(TEST_SET),--data-dir $(or $(DATA_DIR),$(KWS_DATA_DIR),data/speech_commands_v0.02))

# A finished run into the firmware again, e.g. with other settings: make export RUN=build/... SET="app.inference_every_hops=5"
export: venv
	$(if $(RUN),,$(error set RUN=build/..., a run folder of make train))
	$(PY) -m training.export $(RUN) $(foreach setting,$(SET),--set $(setting))

# The fetch script also writes the library.json with which the board build links the same tree.
$(KISSFFT_SRC)/library.json: firmware/lib/kws_core/tools/fetch_kissfft.py
	$(PYTHON) firmware/lib/kws_core/tools/fetch_kissfft.py --dest build/kissfft

kissfft: $(KISSFFT_SRC)/library.json

# Board targets (PlatformIO from the `firmware` extra; its first run downloads the platform).
firmware: venv kissfft
	$(PIO) run -d firmware

flash: venv kissfft
	$(PIO) run -d firmware -t upload

monitor: venv
	$(PIO) device monitor -d firmware

# Parity of the firmware core with training on real clips, and its Cortex-M4F sizes.
firmware-check: venv kissfft
	$(if $(CLIPS),,$(error set CLIPS=DIR, a folder of audio clips, e.g. CLIPS=../shared/data/micro_speech_testdata))
	$(PY) -m host_tools.firmware_check $(CLIPS)

# Flash, RAM and cycle figures of the firmware, measured: the offline board build's map and the board's TFLM under
# QEMU (both below). Without the kit, `python -m host_tools.footprint` measures the core alone and estimates the rest.
firmware-benchmark: firmware-offline firmware-qemu

# The board build without internet, from the pinned PlatformIO kit (KIT, default ../shared/platformio): links with
# only Mbed OS's symbols undefined, checks flags, float ABI and FPU use, writes build/firmware/size.json.
KIT ?= ../shared/platformio
.PHONY: firmware-offline firmware-qemu
firmware-offline: venv kissfft
	$(PY) -m host_tools.board_build offline --kit $(KIT)

# TFLM and the firmware on Cortex-M4F under QEMU: bit-exact with TFLM's Python runtime, the loop's records equal
# simulate.py's, instructions, duty cycle, arena: build/firmware/benchmark.json (audio from $$KWS_SHARED_DATA).
firmware-qemu: venv kissfft
	$(PY) -m host_tools.board_build qemu --kit $(KIT)

# Speed of the device simulator (host_tools/simulate.py) as a multiple of real time, on one core.
host-benchmark: venv
	$(PY) -m host_tools.simulate --benchmark $(BENCH_AUDIO)

# Accuracy and size of the three models, the streaming wake-word benchmark and host speed, side by side with
# published figures: build/benchmark/report.md (runs are cached under build/benchmark/runs/).
benchmark: venv
	$(PY) -m host_tools.benchmark $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(TEST_SET),--test-set $(TEST_SET)) \
		$(foreach folder,$(NEGATIVES),--negatives $(folder)) $(BENCHMARK_ARGS)

# What each change to the wake word buys (clip vs stream windows, hard negatives, calibration), 2 seeds:
# build/benchmark/ablation.md; the runs are shared with make benchmark's (same options, same cache).
# ABLATION_ARGS="--synthetic-positives 1000 --variants '+ hard negatives' 'synthetic only'": text-to-speech
# positives against recordings, at the same false-accept rates.
ablation: venv
	$(PY) -m host_tools.ablation $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(TEST_SET),--test-set $(TEST_SET)) \
		$(foreach folder,$(NEGATIVES),--negatives $(folder)) $(ABLATION_ARGS) $(BENCHMARK_ARGS)

# Synthetic clips of a wake word from offline text-to-speech (training/synthesize.py), e.g.
# make synthesize PHRASE="hey nano" OUT=data/synthetic COUNT=500 [SYNTH_ARGS="--confusable --seed 2"]
PHRASE ?=
OUT ?= data/synthetic
COUNT ?= 500
SYNTH_ARGS ?=
synthesize: venv
	$(if $(PHRASE),,$(error set PHRASE, e.g. make synthesize PHRASE="hey nano"))
	$(PY) -m training.synthesize --phrase "$(PHRASE)" --out "$(OUT)" --count $(COUNT) $(SYNTH_ARGS)

# Training at full scale: the shipped recipe on a 99,720-clip stand-in (the mini set under 30 speaker ids each);
# time to first epoch, seconds per epoch, peak memory of the process tree: build/scale/report.json.
scale-benchmark: venv
	$(PY) -m host_tools.scale_benchmark --data-dir $(SCALE_DATA) --copies $(SCALE_COPIES) $(SCALE_ARGS) \
		$(if $(TRAIN_ARGS),-- $(TRAIN_ARGS))

test: venv
	$(PY) -m pytest $(TEST_ARGS)

clean:
	rm -rf build
