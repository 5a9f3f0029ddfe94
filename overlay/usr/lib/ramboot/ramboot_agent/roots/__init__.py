"""Network and RAM roots: building the next root in the RAM system, then leaving it.

`netroot` (NFS or NBD) and `ramroot` (an image fetched over HTTP) assemble
the new root at /newroot, with its layers under /run/ramboot/root; the
handoff (handoff.py) writes what the new system needs to know into
/run/ramboot and asks busybox init (PID 1) to switch_root into it
(/usr/lib/ramboot/switch-root). /run moves into the new root, so the new
system finds the layers and the handover files at the same paths.
docs/roots.md describes the modes and what the new init receives.
"""
