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

# kissfft's C sources, pinned by SHA-256 (Debian's source package), for the Cortex-M4F builds.
KISSFFT_SRC := build/kissfft/kissfft-131.1.0

.PHONY: venv train evaluate test kissfft clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test]"
	touch $@

venv: $(VENV)/.installed

train: venv
	$(PY) -m training.train --preset $(PRESET) --arch $(ARCH) $(if $(RUN),--out $(RUN)) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(KEYWORDS),--keywords $(KEYWORDS)) $(TRAIN_ARGS)

evaluate: venv
	$(PY) -m training.evaluate --model $(or $(RUN),build/latest)/model_int8.tflite \
		$(if $(TEST_SET),--test-set $(TEST_SET),--data-dir $(or $(DATA_DIR),$(KWS_DATA_DIR),data/speech_commands_v0.02))

$(KISSFFT_SRC)/kiss_fftr.c:
	$(PYTHON) firmware/lib/kws_core/tools/fetch_kissfft.py --dest build/kissfft

kissfft: $(KISSFFT_SRC)/kiss_fftr.c

test: venv
	$(PY) -m pytest $(TEST_ARGS)

clean:
	rm -rf build
