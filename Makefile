# `make demo` and `make test` create .venv/ (tools/setup_env.sh) when needed.
PYTHON := .venv/bin/python

.PHONY: venv demo test docs bench

venv:
	@bash tools/setup_env.sh

demo: venv
	$(PYTHON) tools/demo.py

# Two workers, a test file each at a time (module fixtures stay in one process).
test: venv
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

# The documentation (docs/en, Sphinx + MyST) with warnings as errors and every
# cross-reference checked (-n), then every relative link of README.md and docs/.
docs: venv
	$(PYTHON) -m sphinx -W --keep-going -n -q -b html docs/en docs/_build/html
	$(PYTHON) docs/check_links.py

bench: venv
	$(PYTHON) tools/benchmarks/inference.py

.PHONY: bench-video
bench-video: venv
	$(PYTHON) tools/benchmarks/inference.py --model videomae-vit-b

.PHONY: compare
compare: venv
	$(PYTHON) tools/suites/compare.py

.PHONY: bench-training
bench-training: venv
	$(PYTHON) tools/benchmarks/training.py

.PHONY: bench-cls
bench-cls: venv
	$(PYTHON) tools/benchmarks/training.py --task cls --rounds 5 --profile 8
