# ramboot top-level Makefile: convenience targets around Buildroot and the tests.
# Plain Buildroot usage (make BR2_EXTERNAL=... rpi4_pxe_defconfig && make) works too.

VENV ?= .venv
PYTHON ?= $(VENV)/bin/python

# The Buildroot release this tree is written and tested against. Without
# BUILDROOT_DIR, `make <board>` clones it once into BUILDROOT_CACHE and checks
# that the tag still names the commit pinned here.
BUILDROOT_VERSION := 2026.02.3
BUILDROOT_COMMIT := 679b9ead7620bbf193620d1ebf56f53c1764d37a
BUILDROOT_GIT ?= https://gitlab.com/buildroot.org/buildroot.git
BUILDROOT_CACHE ?= $(CURDIR)/.cache/buildroot-$(BUILDROOT_VERSION)
BUILDROOT := $(or $(BUILDROOT_DIR),$(BUILDROOT_CACHE))

BOARDS := rpi4 x86_64
OUTPUT ?= $(CURDIR)/output

# Buildroot's own Makefile serialises itself; every call goes through here.
BR_MAKE = $(MAKE) -C $(BUILDROOT) BR2_EXTERNAL=$(CURDIR)

.PHONY: help test test-extended test-deps build-deps lint buildroot-source offline-build $(BOARDS)

help:
	@echo 'Images (output in output/<board>/images, see docs/br-tree.md):'
	@echo '  rpi4, x86_64            configure if needed, then build'
	@echo '  <board>-defconfig       (re)apply configs/<board>_pxe_defconfig'
	@echo '  <board>-<target>        any Buildroot target in output/<board>, e.g.'
	@echo '                          rpi4-menuconfig, x86_64-linux-menuconfig,'
	@echo '                          rpi4-savedefconfig (writes configs/ back)'
	@echo '  buildroot-source        fetch Buildroot $(BUILDROOT_VERSION) into the cache'
	@echo '  offline-build BOARD=b   build configs/<b>_pxe_defconfig without upstream'
	@echo '                          downloads, from ../shared/vendor and Debian'
	@echo '                          (output/offline-<b>, see docs/offline-build.md)'
	@echo 'Development:'
	@echo '  test                    set up what the tests need (root on Debian:'
	@echo '                          system packages too), then run the test suite'
	@echo '  test-extended           the same, with the long extended tests too'
	@echo '  lint                    ruff and shellcheck'
	@echo 'Variables: BUILDROOT_DIR (an existing Buildroot tree), OUTPUT, BUILDROOT_CACHE,'
	@echo '           OFFLINE_BUILD_CACHE (default ~/.cache/ramboot/offline-build)'

# Each entry point sets up what it needs: quick when nothing is missing;
# without root it names the missing Debian packages and stops.
test-deps:
	@RAMBOOT_VENV=$(VENV) scripts/install-deps --if-needed

build-deps:
	@scripts/install-deps --if-needed --build

# The default suite leaves out the `extended` tests (long variants of scenarios it
# covers: the same flow on the other architecture, failures that wait out a timeout);
# test-extended runs everything.
test: test-deps
	$(PYTHON) -m pytest -m 'not extended' $(PYTEST_ARGS)

test-extended: test-deps
	$(PYTHON) -m pytest $(PYTEST_ARGS)

lint: test-deps
	$(PYTHON) -m ruff check .
	shellcheck -s sh $(sort $(wildcard board/*/*.sh))

ifeq ($(BUILDROOT_DIR),)
buildroot-source: $(BUILDROOT_CACHE)/Makefile

$(BUILDROOT_CACHE)/Makefile: | build-deps
	rm -rf '$(BUILDROOT_CACHE).tmp'
	git clone --quiet --depth 1 --branch '$(BUILDROOT_VERSION)' \
		'$(BUILDROOT_GIT)' '$(BUILDROOT_CACHE).tmp'
	@commit=$$(git -C '$(BUILDROOT_CACHE).tmp' rev-parse HEAD) && \
	if [ "$$commit" != '$(BUILDROOT_COMMIT)' ]; then \
		echo "Buildroot $(BUILDROOT_VERSION) is $$commit, expected $(BUILDROOT_COMMIT)" >&2; \
		rm -rf '$(BUILDROOT_CACHE).tmp'; exit 1; \
	fi
	mv '$(BUILDROOT_CACHE).tmp' '$(BUILDROOT_CACHE)'
else
buildroot-source:
	@test -f '$(BUILDROOT_DIR)/Makefile' -a -f '$(BUILDROOT_DIR)/Config.in' || \
		{ echo 'BUILDROOT_DIR=$(BUILDROOT_DIR) is not a Buildroot tree' >&2; exit 1; }
endif

define BOARD_RULES
.PHONY: $(1)-defconfig

$(1): $(OUTPUT)/$(1)/.config | build-deps
	$$(BR_MAKE) O=$(OUTPUT)/$(1)

# Re-applied when the defconfig changes; menuconfig edits are kept until then.
$(OUTPUT)/$(1)/.config: configs/$(1)_pxe_defconfig | buildroot-source
	$$(BR_MAKE) O=$(OUTPUT)/$(1) $(1)_pxe_defconfig

$(1)-defconfig: | buildroot-source
	$$(BR_MAKE) O=$(OUTPUT)/$(1) $(1)_pxe_defconfig

$(1)-%: $(OUTPUT)/$(1)/.config
	$$(BR_MAKE) O=$(OUTPUT)/$(1) $$*
endef

$(foreach b,$(BOARDS),$(eval $(call BOARD_RULES,$(b))))

# The tree's own defconfig built with the vendored Buildroot and every upstream
# download replaced by Debian's packages (scripts/offline-build.toml). Run again
# to resume. The venv's Python when there is one (pip, for the PyPI sdists).
OFFLINE_PYTHON ?= $(if $(wildcard $(PYTHON)),$(PYTHON),python3)

offline-build: | build-deps
	@test -n '$(filter $(BOARD),$(BOARDS))' || \
		{ echo 'usage: make offline-build BOARD=<$(subst $(eval) ,|,$(BOARDS))>' >&2; exit 2; }
	$(OFFLINE_PYTHON) scripts/offline-build --board '$(BOARD)' --output '$(OUTPUT)' \
		$(if $(OFFLINE_BUILD_CACHE),--cache '$(OFFLINE_BUILD_CACHE)')
