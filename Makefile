# make demo / make test work on a fresh machine with Python 3.11 and pip: they create .venv
# when it is missing and install jaxem with the versions pinned in constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
SOURCES := $(wildcard jaxem/*.py jaxem/*/*.py)
EXECUTED := build/notebooks/.executed

.PHONY: venv demo test notebooks docs bench lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jaxem demo --plot demo.png

test: $(EXECUTED)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests
	$(MAKE) docs

# The notebooks run once, as tests (nbmake), on copies in build/notebooks that keep their
# outputs; the documentation site shows those copies, and tests/test_docs.py checks it does.
notebooks: $(EXECUTED)

$(EXECUTED): $(STAMP) $(NOTEBOOKS) $(SOURCES)
	rm -rf build/notebooks && mkdir -p build/notebooks && cp $(NOTEBOOKS) build/notebooks/
	$(BIN)/python -m pytest -n 2 --nbmake --overwrite build/notebooks
	touch $@

# The documentation site (MkDocs Material, API pages from the docstrings, the executed
# notebooks, formulas as MathML: nothing is fetched when it is read) into site/; warnings fail.
docs: $(EXECUTED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Timings against scikit-learn and gmmx, and the time to first result (a few minutes);
# rewrites docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	$(BIN)/python benchmarks/speed.py --markdown docs/benchmarks.md --json benchmarks/speed.json
	$(BIN)/python benchmarks/first_minute.py --markdown-section docs/benchmarks.md
	$(BIN)/python benchmarks/hmm.py --markdown-section docs/benchmarks.md
	$(BIN)/python benchmarks/missing.py --markdown-section docs/benchmarks.md
	$(BIN)/python benchmarks/acceleration.py --markdown-section docs/benchmarks.md
	$(BIN)/python benchmarks/sizes.py --markdown-section docs/benchmarks.md
	$(BIN)/python benchmarks/uncertainty.py --large --markdown-section docs/benchmarks.md
	$(BIN)/python benchmarks/numpyro_models.py --markdown-section docs/benchmarks.md
	$(BIN)/python benchmarks/robust.py --markdown-section docs/benchmarks.md
	$(BIN)/python benchmarks/streaming.py --markdown-section docs/benchmarks.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .cache *.egg-info site build
