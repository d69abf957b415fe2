# retrain-assets: `make demo` and `make test` are all a user needs (Python 3.11 and git).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: install demo test ui lock clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is needed, found {sys.version.split()[0]} at {sys.executable}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: install
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || cp deploy/local/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	RETRAIN_CONFIG= $(BIN)/python -m retrain_assets.demo

test: install
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/python -m pytest -n 2 --durations=25

ui: install
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || cp deploy/local/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

# Re-resolve the pinned environment (after changing setup.py) and record it in constraints.txt.
lock:
	rm -rf /tmp/retrain-lock && $(PYTHON) -m venv /tmp/retrain-lock
	/tmp/retrain-lock/bin/python -m pip install --quiet --upgrade pip
	/tmp/retrain-lock/bin/python -m pip install --quiet -e '.[dev]'
	/tmp/retrain-lock/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) data/landing data/state data/dagster_home *.egg-info
