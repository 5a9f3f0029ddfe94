#!/bin/sh
# After the overlay is copied: date the image, check nbd-client, remove
# the init scripts the RAM system must not run, and byte-compile the
# ramboot agent that the rootfs overlay installed in /usr/lib/ramboot,
# then drop the docstrings of every .pyc (python-docstrings.py).
# python3's own byte-compilation runs in target-finalize, before the
# overlay is copied, so it never sees these files.
#
# Follows python3's module format choice (BR2_PACKAGE_PYTHON3_PY_ONLY,
# _PYC_ONLY, _PY_PYC), like the rest of the target's Python code:
#   PYC_ONLY  .pyc next to where the .py was (sourceless import), .py removed
#   PY_PYC    .py kept, .pyc in __pycache__
#   PY_ONLY   nothing to do
# The compiler is the host python3 Buildroot built: same version as the
# target's, so the .pyc magic number matches.

set -eu

AGENT_DIR="${TARGET_DIR}/usr/lib/ramboot"

if [ ! -d "${AGENT_DIR}" ]; then
	echo "post-build: ${AGENT_DIR} missing: is BR2_ROOTFS_OVERLAY set?" >&2
	exit 1
fi

# The clock's floor: a Pi has no RTC, and the agent never lets the clock
# start before the image was built (ramboot_agent/clock.py); a reproducible
# build dates it by SOURCE_DATE_EPOCH.
echo "${SOURCE_DATE_EPOCH:-$(date -u +%s)}" >"${AGENT_DIR}/build-date"

# nbd-client must configure NBD over netlink and exit (docs/roots.md): one
# built without libnl stays behind to serve the device, and init ends it,
# with the root on it, at the switch to an NBD root. Buildroot's nbd finds
# libnl only when libnl happens to be built first.
NBD_CLIENT="${TARGET_DIR}/usr/sbin/nbd-client"
if [ -f "${NBD_CLIENT}" ] && ! grep -q "libnl-genl-3" "${NBD_CLIENT}"; then
	echo "post-build: ${NBD_CLIENT} was built without netlink (libnl)" >&2
	exit 1
fi

# Init scripts of packages that the RAM system must not run (rcS starts
# every /etc/init.d/S??*): dropbear's would start an SSH server on every
# boot, when the agent starts dropbear itself, with the keys
# ramboot.ssh_authorized_keys= gives, only for a rescue shell.
rm -f "${TARGET_DIR}/etc/init.d/S50dropbear"

# One module-loading policy: the overlay's S10coldplug, with devtmpfs
# creating the device nodes. mdev's or eudev's coldplug would load the same
# modules a second time, in parallel with it.
for script in S10mdev S10udev; do
	if [ -e "${TARGET_DIR}/etc/init.d/${script}" ]; then
		echo "post-build: /etc/init.d/${script} and S10coldplug both load modules:" \
			"use BR2_ROOTFS_DEVICE_CREATION_DYNAMIC_DEVTMPFS" >&2
		exit 1
	fi
done

"$(dirname "$0")/post-build-slim.sh"

config_set() {
	grep -qx "${1}=y" "${BR2_CONFIG}"
}

if config_set BR2_PACKAGE_PYTHON3_PY_ONLY; then
	exit 0
fi

legacy=""
if config_set BR2_PACKAGE_PYTHON3_PYC_ONLY; then
	legacy="-b"
fi

# -s/-p record /usr/lib/ramboot/... as the source path in the .pyc files;
# checked-hash .pyc stay valid whatever the file times in the initramfs.
# shellcheck disable=SC2086 # ${legacy} is one flag or nothing
"${HOST_DIR}/bin/python3" -m compileall -q -f ${legacy} \
	--invalidation-mode checked-hash \
	-s "${TARGET_DIR}" -p / \
	"${AGENT_DIR}"

if [ -n "${legacy}" ]; then
	find "${AGENT_DIR}" -name '*.py' -type f -delete
	find "${AGENT_DIR}" -name '__pycache__' -type d -prune -exec rm -rf {} +
fi

# Docstrings are documentation, which the image leaves out: dropped from
# every .pyc as python -OO would (nothing in the image calls help()).
"${HOST_DIR}/bin/python3" "$(dirname "$0")/python-docstrings.py" \
	"${TARGET_DIR}/usr/lib/python3."* "${AGENT_DIR}"
