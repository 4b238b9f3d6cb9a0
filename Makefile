# One-command entry points. Every target sets itself up from a clean clone.
#   make test   - venv + pinned deps + Debian test deps, then ruff, mypy (strict), pytest
#   make demo   - the main job on the embedded default (synthetic flight, replay, evaluation)
#   make bench  - benchmarks, JSON in bench-results/, table in docs/BENCHMARKS.md
#   make test-oldstack - core + classical + node tests on Debian's OpenCV 4.6 / numpy 1.24
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := ros,torch,onnx,gpsd,tools,dev
MAP ?=
DEMO_OUT ?= demo-out
BENCH_OUT ?= bench-results
# The oldest supported stack (README "Supported stacks"): Debian bookworm's python3-opencv and
# python3-numpy in a --system-site-packages venv (scripts/setup_oldstack.sh).
OLDSTACK_VENV ?= .venv-oldstack
OLDSTACK_STAMP := $(OLDSTACK_VENV)/.installed
OLDSTACK_OPENCV ?= 4.6
OLDSTACK_NUMPY ?= 1.24
OLDSTACK_TESTS ?= test/oldstack test/unit/core test/unit/ros \
	test/unit/models/test_models_classical.py test/unit/models/test_models_classical_speed.py \
	test/ros test/static

.PHONY: setup debs test lint typecheck pytest demo bench clean test-oldstack

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

# mypy --strict (pyproject.toml) on the core, the backends and the ROS adapter's modules.
TYPECHECK_PATHS := cvgl_ros/core cvgl_ros/backends cvgl_ros/lazy.py cvgl_ros/ros

typecheck: setup
	$(VENV)/bin/mypy $(TYPECHECK_PATHS)

pytest: setup debs
	bash scripts/run_pytest.sh $(PYTEST_ARGS)

test: lint typecheck pytest

$(OLDSTACK_STAMP): scripts/setup_oldstack.sh requirements/oldstack.txt requirements/oldstack-constraints.txt
	bash scripts/setup_oldstack.sh $(OLDSTACK_VENV)
	touch $(OLDSTACK_STAMP)

# test/oldstack asserts that this run really sees OpenCV $(OLDSTACK_OPENCV) and numpy
# $(OLDSTACK_NUMPY) from Debian (it skips in `make test`).
test-oldstack: $(OLDSTACK_STAMP) debs
	CVGL_OLDSTACK_OPENCV=$(OLDSTACK_OPENCV) CVGL_OLDSTACK_NUMPY=$(OLDSTACK_NUMPY) \
	PROJ_DATA=/usr/share/proj PYTHONPATH=$(CURDIR) VENV=$(OLDSTACK_VENV) \
	bash scripts/run_pytest.sh $(OLDSTACK_TESTS) $(PYTEST_ARGS)

demo: setup
	bash scripts/ros_env.sh $(VENV)/bin/cvgl-ros demo --out $(DEMO_OUT) $(if $(MAP),--map $(MAP),)

bench: setup
	bash scripts/ros_env.sh $(VENV)/bin/cvgl-ros bench --out $(BENCH_OUT)

clean:
	rm -rf $(VENV) $(OLDSTACK_VENV) .mypy_cache .ruff_cache .pytest_cache $(DEMO_OUT) $(BENCH_OUT)
