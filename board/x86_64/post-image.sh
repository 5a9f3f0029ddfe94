#!/bin/sh
# Assemble ${BINARIES_DIR}/netboot: tftp/ holds the iPXE binaries that the
# machines' PXE firmware loads, http/ the kernel and initramfs that the
# iPXE boot script fetches.

set -eu

NETBOOT="${BINARIES_DIR}/netboot"

for f in bzImage rootfs.cpio.zst; do
	if [ ! -f "${BINARIES_DIR}/${f}" ]; then
		echo "post-image: ${BINARIES_DIR}/${f} missing" >&2
		exit 1
	fi
done

# Start from scratch: no file of an earlier build may linger in the tree.
rm -rf "${NETBOOT}"
mkdir -p "${NETBOOT}/tftp" "${NETBOOT}/http"

if [ -d "${BINARIES_DIR}/ipxe" ]; then
	cp "${BINARIES_DIR}"/ipxe/* "${NETBOOT}/tftp/"
fi
cp "${BINARIES_DIR}/bzImage" "${BINARIES_DIR}/rootfs.cpio.zst" \
	"${NETBOOT}/http/"

# A checksum list lets the publishing side verify what it copies.
(
	cd "${NETBOOT}"
	find . -type f -printf '%P\0' | LC_ALL=C sort -z | \
		xargs -0 sha256sum > "${BINARIES_DIR}/netboot.SHA256SUMS"
)
mv "${BINARIES_DIR}/netboot.SHA256SUMS" "${NETBOOT}/SHA256SUMS"

echo "post-image: netboot tree ready in ${NETBOOT}"
