# The two commands of the README:
#   make demo   train + evaluate Sparse R-CNN on the bundled shapes data
#   make test   run the test suite
# Both create/reuse the virtual environment first (tools/setup_env.sh).
PYTHON := .venv/bin/python
PYTEST_ARGS ?= -q

.PHONY: env test demo lint clean-env

env:
	bash tools/setup_env.sh

test: env
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

demo: env
	$(PYTHON) tools/demo.py $(DEMO_ARGS)

lint: env
	$(PYTHON) -m ruff check mmdet_sparse tools tests benchmarks

clean-env:
	rm -rf .venv
