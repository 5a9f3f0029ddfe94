"""Property tests of every parser that takes operator input: the inventory (each
field, and whole documents) and the deploy manifest.

The only outcomes allowed are a clean result or the tool's own error
(InventoryError / RambootError); whatever is accepted renders into the output
directory and nowhere else, and adds no line to any generated file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramboot.deploy.manifest import parse as parse_manifest
from ramboot.errors import RambootError
from ramboot.inventory import InventoryError, parse_inventory
from ramboot.treelinks import resolve
from tests.tools.render.helpers import make_images, render_text
from tests.tools.render.test_inventory import HEADER

# Text that mixes plausible values with every separator the formats care about.
_SPECIAL = st.sampled_from([*"\n\r\t \x00\x0b\x0c\x85\u2028\"'\\,;#$&|{}<>%=/.:@[]`",
                            "..", "${x}", "||", "&&", "\r\n"])
_PLAIN = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
FUZZ_TEXT = st.lists(st.one_of(_PLAIN, _SPECIAL, st.sampled_from(
    ["pi-01", "http://192.0.2.1/", "1a2b3c4d", "dc:a6:32:00:00:01", "ramboot.debug=1"])),
    max_size=6).map("".join)

HOST_FIELDS = ("name", "serial", "macs", "url", "report_url", "kernel_args", "console",
               "ramboot", "model", "ip")
SECTION_FIELDS = (("servers", "http_base"), ("servers", "dhcp_interface"),
                  ("servers", "tftp_root"), ("servers", "report_url"),
                  ("network", "domain"), ("profiles.rescue", "description"))


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _host(field: str, value: str) -> str:
    fields = {"name": '"pi-07"', "family": '"rpi4"', "serial": '"1a2b3c4d"',
              "macs": '["dc:a6:32:00:00:01"]', "profile": '"rescue"'}
    text = _toml_string(value)
    if field in ("macs", "kernel_args", "console"):
        text = f"[{text}]"
    elif field == "ramboot":
        text = f"{{ debug = {text} }}"
    if field == "url":  # a target's URL: the one a host names itself
        fields.pop("profile")
        field, text = "target", f'{{ kind = "script", url = {text} }}'
    fields[field] = text
    return "".join(f"{key} = {val}\n" for key, val in fields.items())


def _accepted_lines_are_clean(text: str, workdir: Path) -> None:
    """If `text` parses, render it and check nothing left the tree or split a line."""
    try:
        parse_inventory(text, Path("fleet.toml"))
    except InventoryError as error:
        assert error.problems and all(isinstance(p, str) for p in error.problems)
        return
    images = make_images(workdir / "images")
    out = workdir / "out" / "tree"
    try:
        render_text(text, images, out, workdir)
    except RambootError:
        return  # e.g. a kexec path not under images: a clean refusal
    outside = {p.name for p in (workdir / "out").iterdir()}
    assert outside == {"tree"}, outside
    for path in out.rglob("*"):
        if path.is_symlink():
            assert (path.parent / path.readlink()).resolve().is_relative_to(out.resolve())
        elif path.is_file() and path.suffix in (".txt", ".ipxe", ".conf"):
            for line in path.read_text().splitlines():
                assert line.isprintable(), (path, line)


_SETTINGS = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(field=st.sampled_from(HOST_FIELDS), value=FUZZ_TEXT)
def test_any_host_field_gives_a_clean_result_or_a_clean_error(field: str, value: str) -> None:
    text = HEADER + "\n[[hosts]]\n" + _host(field, value)
    with tempfile.TemporaryDirectory() as tmp:
        _accepted_lines_are_clean(text, Path(tmp))


@_SETTINGS
@given(where=st.sampled_from(SECTION_FIELDS), value=FUZZ_TEXT)
def test_any_section_field_gives_a_clean_result_or_a_clean_error(
    where: tuple[str, str], value: str
) -> None:
    section, key = where
    encoded = f"[{_toml_string(value)}]" if key == "args" else _toml_string(value)
    header = HEADER.replace(f"[{section}]\n", f"[{section}]\n{key} = {encoded}\n", 1)
    if f"[{section}]" not in HEADER:
        header = HEADER + f"\n[{section}]\n{key} = {encoded}\n"
    # A key given twice is a TOML error, fine: the parser must still say so cleanly.
    text = header + '\n[[hosts]]\nname = "pi-07"\nfamily = "rpi4"\nserial = "1a2b3c4d"\n' \
        'profile = "rescue"\n'
    with tempfile.TemporaryDirectory() as tmp:
        _accepted_lines_are_clean(text, Path(tmp))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_inventory_document_gives_a_clean_result_or_a_clean_error(text: str) -> None:
    try:
        parse_inventory(text, Path("fleet.toml"))
    except InventoryError as error:
        assert error.problems


# --- the manifest ---------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | FUZZ_TEXT,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(FUZZ_TEXT, children, max_size=4),
    max_leaves=12,
)
_ENTRY = st.fixed_dictionaries({}, optional={
    "size": st.one_of(st.integers(-5, 1 << 40), st.booleans(), FUZZ_TEXT),
    "mode": st.sampled_from([0o644, 0o755, 0o777, -1, "420", None]),
    "sha256": st.one_of(st.just("0" * 64), st.just("A" * 64), FUZZ_TEXT),
    "target": FUZZ_TEXT,
    "extra": _JSON,
})


@settings(max_examples=300, deadline=None)
@given(files=st.dictionaries(FUZZ_TEXT, st.one_of(_ENTRY, _JSON), max_size=5),
       version=st.sampled_from([1, 1, 2, "1", None]))
def test_any_manifest_gives_valid_entries_or_a_clean_error(files: object, version: object) -> None:
    text = json.dumps({"version": version, "files": files})
    try:
        manifest = parse_manifest(text, "MANIFEST.json")
    except RambootError as error:
        assert str(error).startswith("MANIFEST.json: corrupt manifest: ")
        return
    for path, entry in manifest.items():
        parts = path.split("/")
        assert not path.startswith("/") and ".." not in parts and "" not in parts
        assert os.path.normpath(path) == path
        assert entry.is_link or (len(entry.sha256) == 64 and entry.mode in (0o644, 0o755))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_manifest_text_gives_a_clean_error(text: str) -> None:
    try:
        parse_manifest(text, "M")
    except RambootError as error:
        assert str(error).startswith("M: corrupt manifest: ")


# --- symlink resolution ------------------------------------------------------------

_NAMES = st.sampled_from(["a", "b", "tftp", "tftp/a", "tftp/b", "tftp/c", "http", "http/a"])
_TARGETS = st.lists(st.sampled_from([".", "..", "a", "b", "tftp", "http", "c"]),
                    min_size=1, max_size=5).map("/".join)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_NAMES, _TARGETS, min_size=1, max_size=5))
def test_resolve_agrees_with_the_kernel_inside_a_real_tree(links: dict[str, str]) -> None:
    """Build the links in a real directory (one level below a decoy parent) and
    compare: whenever `resolve` says a link stays inside, the kernel agrees."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        for directory in ("tftp", "http"):
            (tree / directory).mkdir(parents=True, exist_ok=True)
        made = {}
        for link, target in sorted(links.items()):
            path = tree / link
            if path.exists() or path.is_symlink() or not path.parent.is_dir() \
                    or path.parent.is_symlink():
                continue
            path.symlink_to(target)
            made[link] = target
        for link in made:
            resolved = resolve(made, link)
            if resolved is None:
                continue
            try:
                real = (tree / link).resolve(strict=False)
            except RuntimeError:  # a loop the kernel would also refuse (ELOOP)
                continue
            assert real.is_relative_to(tree.resolve()), (made, link, resolved, real)
            assert real == (tree / resolved).resolve(strict=False), (made, link, resolved)
