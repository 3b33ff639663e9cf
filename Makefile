# `make demo` and `make test` create .venv/ (tools/setup_env.sh) when needed.
PYTHON := .venv/bin/python

.PHONY: venv demo test bench

venv:
	@bash tools/setup_env.sh

demo: venv
	$(PYTHON) tools/demo.py

test: venv
	$(PYTHON) -m pytest -q

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
