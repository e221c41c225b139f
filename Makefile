# Each target creates the local virtualenv .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): requirements.txt requirements-dev.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -r requirements-test.txt
	touch $(STAMP)

.PHONY: venv demo test test-fast lint bench
venv: $(STAMP)

# The main job: sample quality against NFE, baseline and PDS, on the exact FFHQ-256 field.
demo: $(STAMP)
	$(PY) main.py --config=configs/analytic/ffhq_256.py --workdir=runs/ffhq256_bench \
		--mode=bench --overwrite
	cat runs/ffhq256_bench/bench/quality.md

test: $(STAMP)
	$(PY) -m ruff check .
	JAX_PLATFORMS=cpu $(PY) -m pytest -n 2 --durations=15

# The inner loop: every test not marked slow (the golden runs, multi-process jobs, long
# statistical checks and subprocess device checks are slow); CI runs the full suite.
test-fast: $(STAMP)
	JAX_PLATFORMS=cpu $(PY) -m pytest -n 2 -m "not slow" --durations=10

bench: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/precondition_ffhq1024.py
