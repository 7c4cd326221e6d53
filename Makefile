# make demo / make test work on a fresh machine with Python 3.11 and pip: they create .venv
# when it is missing and install jaxem with the versions pinned in constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test docs bench lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jaxem demo --plot demo.png

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --nbmake tests notebooks
	$(MAKE) docs

# The documentation site (MkDocs Material, API pages from the docstrings, the notebooks
# rendered without running them) into site/; warnings fail the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Timings against scikit-learn and gmmx, and the time to first result (a few minutes);
# rewrites docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	$(BIN)/python benchmarks/speed.py --markdown docs/benchmarks.md --json benchmarks/speed.json
	$(BIN)/python benchmarks/first_minute.py --markdown-section docs/benchmarks.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .cache *.egg-info site
