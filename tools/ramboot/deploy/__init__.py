"""Atomic publishing of rendered boot trees into a release store.

Layout of a store (ROOT):

    ROOT/releases/<id>/        one complete, read-only tree per release
    ROOT/releases/<id>/MANIFEST.json
    ROOT/current -> releases/<id>

Boot servers serve paths below ROOT/current (e.g. ROOT/current/tftp), so
replacing the `current` symlink with one rename(2) switches every tree at once.
"""
