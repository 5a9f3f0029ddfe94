#!/bin/sh
# Assemble ${BINARIES_DIR}/netboot: every file a Raspberry Pi 4 / Pi 400 /
# CM4 reads over TFTP, ready to copy into a per-serial TFTP directory.

set -eu

NETBOOT="${BINARIES_DIR}/netboot"
FIRMWARE="${BINARIES_DIR}/rpi-firmware"

for f in Image rootfs.cpio.zst "rpi-firmware/start4.elf" \
	"rpi-firmware/fixup4.dat" "rpi-firmware/config.txt" \
	"rpi-firmware/cmdline.txt"; do
	if [ ! -f "${BINARIES_DIR}/${f}" ]; then
		echo "post-image: ${BINARIES_DIR}/${f} missing" >&2
		exit 1
	fi
done

# Start from scratch: no file of an earlier build may linger in the tree.
rm -rf "${NETBOOT}"
mkdir -p "${NETBOOT}"

cp "${FIRMWARE}/start4.elf" "${FIRMWARE}/fixup4.dat" \
	"${FIRMWARE}/config.txt" "${FIRMWARE}/cmdline.txt" "${NETBOOT}/"
if [ -d "${FIRMWARE}/overlays" ]; then
	cp -r "${FIRMWARE}/overlays" "${NETBOOT}/overlays"
fi
cp "${BINARIES_DIR}"/*.dtb "${NETBOOT}/"
cp "${BINARIES_DIR}/Image" "${BINARIES_DIR}/rootfs.cpio.zst" "${NETBOOT}/"

# A checksum list lets the publishing side verify what it copies.
(
	cd "${NETBOOT}"
	find . -type f -printf '%P\0' | LC_ALL=C sort -z | \
		xargs -0 sha256sum > "${BINARIES_DIR}/netboot.SHA256SUMS"
)
mv "${BINARIES_DIR}/netboot.SHA256SUMS" "${NETBOOT}/SHA256SUMS"

echo "post-image: netboot tree ready in ${NETBOOT}"
