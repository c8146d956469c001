# initscore — every target installs what it needs on a fresh machine.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed
DATA ?= ../shared/data

.PHONY: setup demo test soak bench redis browser clean

setup: $(STAMP) redis browser

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q -e '.[all,test]'
	touch $(STAMP)

# redis-server from Debian's packages when the binary is missing (tests start their own on a free port)
redis:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server from Debian's packages"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq redis-server) >/dev/null; }

# Debian's chromium + chromium-driver for the /ui browser test (headless; no download by the test tool itself)
browser:
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || { \
	  echo "installing chromium and chromium-driver from Debian's packages"; \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver) >/dev/null; }

demo: setup
	$(PY) -m initscore demo

test: setup
	OMP_NUM_THREADS=2 $(PY) -m pytest -q -m "not slow" tests

# long tests (marked slow; none at the moment: pytest's "no tests collected" exit 5 is not a failure) + the 500-job fault soak
# and the 1000-job kill-free memory soak (bench/soak.py runs both phases), then Redis SHUTDOWN/restart for 8 s
# while every worker is busy, 10 times in a row (bench/redis_fault.py)
soak: setup
	$(PY) -m pytest -q -m slow tests || [ $$? -eq 5 ]
	OMP_NUM_THREADS=1 $(PY) bench/soak.py
	OMP_NUM_THREADS=1 $(PY) bench/redis_fault.py --rounds 10

bench: setup
	$(PY) bench/engine_speed.py

clean:
	rm -rf .venv .pytest_cache build *.egg-info
