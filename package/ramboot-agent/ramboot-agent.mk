################################################################################
#
# ramboot-agent
#
################################################################################

# The agent lives in the rootfs overlay of this tree, which Buildroot copies
# after every package is installed; post-build.sh byte-compiles it. This
# package therefore has no source of its own: it exists to select the
# agent's runtime dependencies in Config.in and to order them before the
# overlay in the build.
RAMBOOT_AGENT_LICENSE = GPL-2.0-or-later
RAMBOOT_AGENT_DEPENDENCIES = python3

$(eval $(generic-package))
