"""The image registry: what ``kernel``/``initrd``/``imgfetch`` downloaded.

Like iPXE's, images are kept in download order, found by name (the first
match wins), and one of them may be selected (by ``kernel``/``imgselect``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(eq=False)
class Image:
    name: str
    url: str
    path: Path
    size: int
    is_script: bool
    cmdline: str | None = None
    autofree: bool = False
    trusted: bool = False  # imgverify checked its signature
    text: str | None = field(default=None, repr=False)  # script text, when a script


class ImageRegistry:
    def __init__(self) -> None:
        self._images: list[Image] = []
        self.selected: Image | None = None
        self._anonymous = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._images))

    def register(self, image: Image) -> None:
        if not image.name:
            image.name = f"img{self._anonymous}"
            self._anonymous += 1
        if image not in self._images:
            self._images.append(image)

    def unregister(self, image: Image) -> None:
        if image in self._images:
            self._images.remove(image)
        if self.selected is image:
            self.selected = None

    def find(self, name: str) -> Image | None:
        return next((image for image in self._images if image.name == name), None)

    def initrds_for(self, kernel: Image) -> tuple[list[Image], list[str]]:
        """The images to boot ``kernel`` with, and the ``initrd=`` names that
        match no image.

        As iPXE: every other loaded image except scripts, in download
        order (a chained plan never returns to a script, so none is
        here). BIOS iPXE hands a bzImage all of them whatever ``initrd=``
        says, and EFI iPXE does the same through its ``initrd.magic`` file
        and Linux's initrd device path; ``initrd=`` is left on the command
        line for the kernel.
        """
        named = [arg[len("initrd="):] for arg in (kernel.cmdline or "").split()
                 if arg.startswith("initrd=")]
        unmatched = [name for name in named if self.find(name) is None]
        others = [image for image in self._images
                  if image is not kernel and not image.is_script]
        return others, unmatched
