# Two commands for a new user: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP_QUIET := --quiet --disable-pip-version-check
# focus-validator 2.2.1 needs Python 3.12 and pyarrow<21, so it lives in its own venv.
PYTHON312 ?= $(shell ls -d $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 2>/dev/null | head -1 || command -v python3.12)
FV_VENV := .fv-venv
# uv installs the same pins as pip, several times faster; it is bootstrapped from PyPI into the venv.
# pip is the fallback when uv cannot be had or fails (NO_UV=1 forces it). uv reads no pip configuration.
# Both compile the installed modules to bytecode (pip does by default, uv with --compile-bytecode): every
# Dagster process (webserver, daemon, each run, each test's `dagster dev`) imports a few thousand modules, and
# without bytecode on disk it compiles them again at each start (where PYTHONDONTWRITEBYTECODE is set, always).
UV := $(VENV)/bin/uv

# $(call install_into,<venv python>,<requirements>): with uv when it is there, else (or if it fails) with pip
define install_into
	if [ -z "$(NO_UV)" ] && [ -x $(UV) ] && $(UV) pip install --quiet --compile-bytecode --python $(1) $(2); then :; \
	else $(1) -m pip install $(PIP_QUIET) $(2) 2>&1 | grep -v "^WARNING: Location" || true; fi
endef

.PHONY: install demo test lint bench bench-providers bench-compare conformance validator clean

$(VENV)/.installed: setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -n "$(NO_UV)" || test -x $(UV) || ($(PY) -m pip install $(PIP_QUIET) uv 2>&1 | grep -v "^WARNING: Location"; test -x $(UV)) \
		|| echo "uv unavailable: pip installs"
	$(call install_into,$(PY),-e '.[dev]')
	$(PY) -m compileall -q billing_pipeline   # the project itself is installed editable: its bytecode too
	$(PY) -c "import billing_pipeline, dagster, polars, pandera, moto, hypothesis"
	@touch $@

install: $(VENV)/.installed

$(FV_VENV)/bin/focus-validator:
	@test -n "$(PYTHON312)" || (echo "Python 3.12 is needed for focus-validator (pyenv install 3.12)" && exit 1)
	$(PYTHON312) -m venv $(FV_VENV)
	$(call install_into,$(FV_VENV)/bin/python,'focus-validator==2.2.1' 'pyarrow<21')
	@test -x $@

validator: $(FV_VENV)/bin/focus-validator

demo: install
	$(PY) -m billing_pipeline.tools.demo

test: install validator
	FOCUS_VALIDATOR=$(CURDIR)/$(FV_VENV)/bin/focus-validator $(PY) -m pytest -q -p no:cacheprovider

# the same two steps as .pre-commit-config.yaml, checking only
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

conformance: install validator
	FOCUS_VALIDATOR=$(CURDIR)/$(FV_VENV)/bin/focus-validator $(PY) -m billing_pipeline.tools.conformance --all-fixtures

clean:
	rm -rf data .dagster_home bench_results

# make's $(or ...) splits at commas, so the default list is a plain variable
SIZES ?= 1000000,5000000,10000000
PROVIDERS ?= aws_cur2
# CUR 2.0 at every size, then billing_daily side by side with focus-converter 1.0.0 (its own venv)
bench: install
	$(PY) -m billing_pipeline.tools.bench --sizes $(SIZES) --providers $(PROVIDERS) --out bench_results --compare

# every provider's generator and pipeline at one size: make bench-providers SIZES=10000000 [PROVIDERS=gcp,focus]
EVERY_PROVIDER := aws_cur2,gcp,azure,focus
bench-providers: install
	$(PY) -m billing_pipeline.tools.bench --sizes $(SIZES) --out bench_results \
		--providers $(if $(filter command line environment,$(origin PROVIDERS)),$(PROVIDERS),$(EVERY_PROVIDER))

# the side-by-side alone: the AWS sample replicated to 640,500 rows, three pairs
bench-compare: install
	$(PY) -m billing_pipeline.tools.bench_compare --pairs 3 --out bench_results
