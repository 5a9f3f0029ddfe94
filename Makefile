# ramboot top-level Makefile: convenience targets around Buildroot and the tests.
# Plain Buildroot usage (make BR2_EXTERNAL=... rpi4_pxe_defconfig && make) works too.

VENV ?= .venv
PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)

.PHONY: test lint
test:
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check .
