# The README's two commands. Both create .venv when it is missing, install the pinned
# requirements (torch's CPU wheel comes from the local disk; see requirements.txt) and then this
# project itself, editable and without touching those pins, so that `python jobs/<job>.py` and
# `python -m pipeline <job>` find the package from any directory.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_AUTH_MODE := token
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test setup lint clean-runs

# The last install is OFA's own code, the reference the OFA-import tests and bench_ofa_import
# compare against; --no-deps, since its torchvision/gdown imports serve data loading and downloads only.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip install --quiet --no-deps ofa==0.1.0.post202307202001
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	@if [ -e runs/demo ]; then rm -rf runs/demo.previous && mv runs/demo runs/demo.previous && \
		echo "the previous demo run was moved to runs/demo.previous"; fi
	$(PY) jobs/run_pipeline.py --config jobs/configs/demo.yaml --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline jobs tests
