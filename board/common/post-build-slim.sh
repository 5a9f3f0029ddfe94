#!/bin/sh
# Leave out of the image what nothing in it can use (the size budget),
# called from post-build.sh before the agent is byte-compiled:
#   - Python standard library modules the agent can never import
#     (python-stdlib.py: the closure of the agent's imports),
#   - kernel modules not on the board's list
#     (BR2_PACKAGE_RAMBOOT_AGENT_KERNEL_MODULES, kernel-modules.py),
#   - firmware files no driver of the kernel names (kernel-firmware.py),
#   - programs nothing runs (unused-programs.txt; busybox's applet takes
#     the place of one busybox also has),
#   - shared libraries that no executable, library or extension module
#     links (prune-libraries.py; last, as the steps above drop users).
# The Python scripts run on Buildroot's host python3, the target's version,
# so that they can read the target's .pyc files.

set -eu

: "${TARGET_DIR:?}" "${HOST_DIR:?}" "${BR2_CONFIG:?}"

HERE=$(dirname "$0")
PYTHON="${HOST_DIR}/bin/python3"

"${PYTHON}" "${HERE}/python-stdlib.py" "${TARGET_DIR}"

modules_list=$(sed -n \
	's/^BR2_PACKAGE_RAMBOOT_AGENT_KERNEL_MODULES="\(.*\)"$/\1/p' "${BR2_CONFIG}")
if [ -n "${modules_list}" ]; then
	external="${BR2_EXTERNAL_RAMBOOT_PATH:-$(cd "${HERE}/../.." && pwd)}"
	modules_list=$(printf '%s\n' "${modules_list}" |
		sed "s|[$](BR2_EXTERNAL_RAMBOOT_PATH)|${external}|g")
	"${PYTHON}" "${HERE}/kernel-modules.py" --depmod "${HOST_DIR}/sbin/depmod" \
		"${TARGET_DIR}" "${modules_list}"
fi
"${PYTHON}" "${HERE}/kernel-firmware.py" "${TARGET_DIR}"

# Comments and blank lines aside, one path (relative to the target) a line.
# A package's program that busybox also builds becomes busybox's applet
# again (busybox installs no link where a package's program already is).
applets=
if [ -n "${BUILD_DIR:-}" ]; then
	applets=$(find "${BUILD_DIR}" -maxdepth 2 -path '*/busybox-*/busybox.links' | head -n 1)
fi
grep -v -e '^#' -e '^$' "${HERE}/unused-programs.txt" | while read -r program; do
	[ -e "${TARGET_DIR:?}/${program}" ] || [ -L "${TARGET_DIR}/${program}" ] || continue
	rm -f "${TARGET_DIR:?}/${program}"
	name=${program##*/}
	if [ -n "${applets}" ] && [ -x "${TARGET_DIR}/bin/busybox" ]; then
		applet=$(awk -v tail="/${name}" \
			'substr($0, length($0) - length(tail) + 1) == tail { print; exit }' "${applets}")
		if [ -n "${applet}" ]; then
			ln -sf /bin/busybox "${TARGET_DIR}${applet}"
		fi
	fi
done

"${PYTHON}" "${HERE}/prune-libraries.py" "${TARGET_DIR}"
