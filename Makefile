# Everything a fresh machine needs: `make train`, `make test`. The virtual environment is made
# and refreshed (when pyproject.toml changes) by the targets that need it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TF_EXTRA ?= cpu# `gpu` installs the full tensorflow package instead of tensorflow-cpu

# Training settings, passed through to `python -m training.train` (see README).
DATA_DIR ?=# empty: $$KWS_DATA_DIR, else download Speech Commands into data/
PRESET ?= wakeword
KEYWORDS ?=
ARCH ?= dscnn
RUN ?=# empty: training makes a new build/PRESET-ARCH-TIME; evaluate uses build/latest
TRAIN_ARGS ?=
TEST_ARGS ?=
CLIPS ?=# make firmware-check: a folder of WAV/FLAC/Ogg clips
# make host-benchmark: the audio the simulator streams (real speech from the shared data by default)
BENCH_AUDIO ?= $(or $(KWS_SHARED_DATA),../shared/data)/negatives/librispeech_ogg
# make benchmark: audio folders without the keyword for the wake-word stream (data/negatives when present),
# and anything else for host_tools.benchmark (e.g. BENCHMARK_ARGS="--epochs 80 --librispeech")
NEGATIVES ?= $(wildcard data/negatives)
BENCHMARK_ARGS ?=
PIO := $(VENV)/bin/pio

# kissfft's C sources, pinned by SHA-256 (Debian's source package), for the Cortex-M4F builds.
KISSFFT_SRC := build/kissfft/kissfft-131.1.0

.PHONY: venv train evaluate test kissfft clean firmware flash monitor firmware-check firmware-benchmark host-benchmark benchmark

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test,firmware,host]"
	touch $@

venv: $(VENV)/.installed

train: venv
	$(PY) -m training.train --preset $(PRESET) --arch $(ARCH) $(if $(RUN),--out $(RUN)) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(KEYWORDS),--keywords $(KEYWORDS)) $(TRAIN_ARGS)

evaluate: venv
	$(PY) -m training.evaluate --model $(or $(RUN),build/latest)/model_int8.tflite \
		$(if $(TEST_SET),--test-set $(TEST_SET),--data-dir $(or $(DATA_DIR),$(KWS_DATA_DIR),data/speech_commands_v0.02))

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

# Flash, RAM and cycle figures of the firmware (measured where possible, estimates labelled).
firmware-benchmark: venv kissfft
	$(PY) -m host_tools.footprint

# Speed of the device simulator (host_tools/simulate.py) as a multiple of real time, on one core.
host-benchmark: venv
	$(PY) -m host_tools.simulate --benchmark $(BENCH_AUDIO)

# Accuracy and size of the three models, the streaming wake-word benchmark and host speed, side by side with
# published figures: build/benchmark/report.md (runs are cached under build/benchmark/runs/).
benchmark: venv
	$(PY) -m host_tools.benchmark $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(TEST_SET),--test-set $(TEST_SET)) \
		$(foreach folder,$(NEGATIVES),--negatives $(folder)) $(BENCHMARK_ARGS)

test: venv
	$(PY) -m pytest $(TEST_ARGS)

clean:
	rm -rf build
