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
RUN ?= build/$(PRESET)-$(ARCH)
TRAIN_ARGS ?=
TEST_ARGS ?=

.PHONY: venv train evaluate test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test]"
	touch $@

venv: $(VENV)/.installed

train: venv
	$(PY) -m training.train --preset $(PRESET) --arch $(ARCH) --out $(RUN) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(KEYWORDS),--keywords $(KEYWORDS)) $(TRAIN_ARGS)

evaluate: venv
	$(PY) -m training.evaluate --model $(RUN)/model_int8.tflite \
		$(if $(TEST_SET),--test-set $(TEST_SET),--data-dir $(or $(DATA_DIR),$(KWS_DATA_DIR),data/speech_commands_v0.02))

test: venv
	$(PY) -m pytest $(TEST_ARGS)

clean:
	rm -rf build
