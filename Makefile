# The two commands of the README: `make demo` and `make test`. Both create the environment on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export LMLOOP_HOME ?= $(CURDIR)

.PHONY: demo test lint clean ui

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build of torch first, pinned: a looser range pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lmloop sample-data --out $(LMLOOP_HOME)/sample_data --seed 0
	$(VENV)/bin/lmloop run --config tiny --data $(LMLOOP_HOME)/sample_data
	$(VENV)/bin/lmloop finetune --task classification --from champion --config tiny --data $(LMLOOP_HOME)/sample_data

# one pytest-xdist worker per core (at most 4); a module's tests stay together on one worker (loadfile);
# the 15 slowest steps are listed at the end (the CI budget is 20 minutes in all)
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile --durations=15

# the MLflow UI (port 5000) and a Prefect server (port 4200) on this home; Ctrl-C stops both
ui: $(STAMP)
	$(VENV)/bin/lmloop ui

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) work .prefect .cache sample_data && find mlruns -mindepth 1 ! -name .gitkeep -delete
