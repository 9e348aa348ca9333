# trapline: the commands a newcomer needs. See README.md.
PYTHON ?= python3
DETECT := .venv/detect/bin
CLASSIFY := .venv/classify/bin
ARCHIVE ?=
REGION ?= finnmark

.PHONY: setup run test unit lint services services-stop clean

setup:  ## create the worker environments (.venv/detect: PyTorch + megadetector; .venv/classify: TensorFlow)
	PYTHON=$(PYTHON) scripts/setup-envs

run: setup  ## embedded run on one machine: make run ARCHIVE=/path/to/images REGION=finnmark
	@test -n "$(ARCHIVE)" || { echo "usage: make run ARCHIVE=/path/to/images [REGION=finnmark]"; exit 2; }
	$(DETECT)/trapline run "$(ARCHIVE)" --region "$(REGION)"

test: setup lint  ## every test: unit, integration (Redis + PostgreSQL started locally), end to end, both environments
	services="$$(scripts/test-services start)" && eval "$$services" && $(DETECT)/python -m pytest
	$(CLASSIFY)/python -m pytest -m classify tests/unit

unit: setup  ## unit tests only (no servers)
	$(DETECT)/python -m pytest tests/unit
	$(CLASSIFY)/python -m pytest -m classify tests/unit

lint: setup  ## architecture contracts (import-linter) and ruff
	$(DETECT)/lint-imports
	$(DETECT)/ruff check shared producer worker bench tests

services:  ## start the test Redis and PostgreSQL; prints their URLs
	scripts/test-services start

services-stop:
	scripts/test-services stop

clean:
	scripts/test-services stop
	rm -rf .cache/services trapline-data
