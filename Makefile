# The project's entry points. `make report` and `make test` do all the set-up themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= cpu

.PHONY: report test lab data benchmark clean-venv postgres browser gpu-bundle gpu-dry-run gpu-receive \
	gpu-check-wheels

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (minbert)" >/dev/null
	touch $(STAMP)

data: $(STAMP)
	$(PY) -m minbert fetch-data

# RESUME=1 continues a stopped report: every run that finished (runs/) is read back, not trained again.
report: data
	$(PY) -m minbert peer --profile $(PROFILE) $(if $(RESUME),-p resume true)
	$(PY) -m minbert report --profile $(PROFILE) $(if $(RESUME),--resume)
	$(PY) -m minbert readme

# The PostgreSQL server the Optuna scale-out test starts: Debian's package, installed if missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

# The browser the JupyterLab panel test drives: Debian's Chromium, installed if missing.
browser:
	@command -v chromium >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: data postgres browser
	$(PY) -m ruff check lib tests notebooks benchmarks scripts
	# one worker per core, at most four (each notebook test holds a kernel of about 1 GB); the conftest
	# gives each worker its share of the threads; worksteal keeps both busy while the long tests run
	$(PY) -m pytest -n auto --maxprocesses 4 --dist worksteal

# As root (common in containers) JupyterLab refuses to start without --allow-root.
lab: data
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

benchmark: data
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/step_profile.py
	$(PY) benchmarks/dropout.py

# The GPU run (README: "Full profile on a lent GPU"): pack, try its first steps here, bring its files home.
gpu-bundle: data
	$(PY) scripts/gpu/bundle.py

gpu-dry-run: gpu-bundle
	PYTHON=$(PY) bash scripts/gpu/run.sh --dry-run

gpu-receive: $(STAMP)
	$(PY) scripts/gpu/receive.py $(FROM)

# The wheels install into a fresh Python 3.12 (the GPU's) and papermill runs a kernel from them.
gpu-check-wheels: gpu-bundle
	bash scripts/gpu/check_wheels.sh

clean-venv:
	rm -rf $(VENV)
