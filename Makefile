# One-command entry points. Every target sets itself up from a clean clone.
#   make test   - venv + pinned deps + Debian test deps, then ruff, mypy (core), pytest
#   make demo   - the main job on the embedded default (synthetic flight, replay, evaluation)
#   make bench  - benchmarks, JSON in bench-results/, table in docs/BENCHMARKS.md
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := ros,torch,onnx,gpsd,tools,dev
MAP ?=
DEMO_OUT ?= demo-out
BENCH_OUT ?= bench-results

.PHONY: setup debs test lint typecheck pytest demo bench clean

setup: $(STAMP)

$(STAMP): setup.py requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Debian packages the tests use (gpsd + gpsfake); failure is not fatal, those tests then skip.
debs:
	@bash scripts/install_debs.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy cvgl_ros/core

pytest: setup debs
	bash scripts/run_pytest.sh $(PYTEST_ARGS)

test: lint typecheck pytest

demo: setup
	bash scripts/ros_env.sh $(VENV)/bin/cvgl-ros demo --out $(DEMO_OUT) $(if $(MAP),--map $(MAP),)

bench: setup
	bash scripts/ros_env.sh $(VENV)/bin/cvgl-ros bench --out $(BENCH_OUT)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(DEMO_OUT) $(BENCH_OUT)
