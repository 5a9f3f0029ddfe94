################################################################################
#
# ipxe
#
################################################################################

# v2.0.0
IPXE_VERSION = 12798ec29aa8a64d8675c4378b99f5fe28447afb
IPXE_SITE = $(call github,ipxe,ipxe,$(IPXE_VERSION))
IPXE_LICENSE = GPL-2.0-or-later, UBDL
IPXE_LICENSE_FILES = COPYING COPYING.GPLv2 COPYING.UBDL
IPXE_DEPENDENCIES = host-xz
# iPXE is firmware: it is not installed in the target filesystem.
IPXE_INSTALL_TARGET = NO
IPXE_INSTALL_IMAGES = YES

IPXE_EMBEDDED_SCRIPT = $(call qstrip,$(BR2_PACKAGE_IPXE_EMBEDDED_SCRIPT))

IPXE_TARGETS = \
	$(if $(BR2_PACKAGE_IPXE_UNDIONLY_KPXE),bin/undionly.kpxe) \
	$(if $(BR2_PACKAGE_IPXE_IPXE_EFI),bin-x86_64-efi/ipxe.efi) \
	$(if $(BR2_PACKAGE_IPXE_SNPONLY_EFI),bin-x86_64-efi/snponly.efi)

# iPXE is freestanding code with its own CFLAGS: only the compiler prefix
# comes from the toolchain. The build tools (zbin, elf2efi) are host
# programs; zbin links against liblzma from host-xz.
IPXE_MAKE_OPTS = \
	CROSS=$(TARGET_CROSS) \
	HOST_CC="$(HOSTCC)" \
	HOST_CFLAGS="$(HOST_CFLAGS)" \
	ZBIN_LDFLAGS="$(HOST_LDFLAGS) -llzma" \
	NO_WERROR=1 \
	V=1 \
	$(if $(IPXE_EMBEDDED_SCRIPT),EMBED=$(IPXE_EMBEDDED_SCRIPT))

ifeq ($(BR2_PACKAGE_IPXE)$(BR_BUILDING),yy)
ifeq ($(strip $(IPXE_TARGETS)),)
$(error BR2_PACKAGE_IPXE needs at least one iPXE binary selected)
endif
ifneq ($(IPXE_EMBEDDED_SCRIPT),)
ifeq ($(wildcard $(IPXE_EMBEDDED_SCRIPT)),)
$(error BR2_PACKAGE_IPXE_EMBEDDED_SCRIPT: $(IPXE_EMBEDDED_SCRIPT) does not exist)
endif
endif
endif

define IPXE_BUILD_CMDS
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D)/src $(IPXE_MAKE_OPTS) \
		$(IPXE_TARGETS)
endef

define IPXE_INSTALL_IMAGES_CMDS
	$(foreach t,$(IPXE_TARGETS),
		$(INSTALL) -D -m 0644 $(@D)/src/$(t) \
			$(BINARIES_DIR)/ipxe/$(notdir $(t))
	)
endef

$(eval $(generic-package))
