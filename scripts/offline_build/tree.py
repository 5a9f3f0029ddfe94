"""The throwaway Buildroot copy, its edits, the defconfig copy and the build."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from . import fetch
from .table import Board, HostTool, Source, SubstitutionError, Table

HOST_TOOL_MK = """\
# ramboot scripts/offline-build: {why}.
HOST_{var}_VERSION = host
HOST_{var}_SOURCE =
define HOST_{var}_INSTALL_CMDS
\tmkdir -p $(HOST_DIR)/bin
{links}
endef
$(eval $(host-generic-package))
"""


def unpack_buildroot(vendor: Path, tarball: str, out: Path) -> Path:
    """A fresh copy of the vendored Buildroot in OUT/buildroot (edited below)."""
    path = fetch.vendor_file(vendor, tarball)
    buildroot = out / "buildroot"
    partial = out / "buildroot.part"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.split("/", 1)
            if len(parts) < 2 or not parts[1]:
                continue
            member.name = parts[1]
            tar.extract(member, partial, filter="tar")
    if not (partial / "Makefile").is_file():
        raise SubstitutionError(f"{tarball} is not a Buildroot tree")
    shutil.rmtree(buildroot, ignore_errors=True)
    partial.rename(buildroot)
    return buildroot


def package_dir(buildroot: Path, package: str) -> Path:
    directory = buildroot / ("linux" if package == "linux" else f"package/{package}")
    if not directory.is_dir():
        raise SubstitutionError(f"{package}: Buildroot has no {directory.relative_to(buildroot)}")
    return directory


def mk_file(buildroot: Path, package: str) -> Path:
    directory = package_dir(buildroot, package)
    name = "linux.mk" if package == "linux" else f"{package}.mk"
    return directory / name


def hash_file(buildroot: Path, package: str) -> Path:
    return package_dir(buildroot, package) / f"{package}.hash"


def set_variable(text: str, variable: str, value: str, where: str) -> str:
    """TEXT with its one assignment `VARIABLE = ...` replaced, or, when the
    .mk leaves VARIABLE to Buildroot's default, with the assignment on top."""
    pattern = re.compile(rf"^{re.escape(variable)}\s*[:?]?=.*$", re.MULTILINE)
    found = len(pattern.findall(text))
    if found == 0:
        return f"{variable} = {value}\n" + text
    if found > 1:
        raise SubstitutionError(f"{where}: {variable} is assigned {found} times")
    return pattern.sub(lambda _: f"{variable} = {value}", text)


def edit_mk(text: str, source: Source, where: str) -> str:
    for variable, value in source.set.items():
        text = set_variable(text, variable, value, where)
    if source.prepend:
        text = "\n".join(source.prepend) + "\n\n" + text
    return text


def known_digests(hash_text: str, file: str) -> dict[str, str]:
    """The digests a Buildroot .hash file gives for FILE, by algorithm."""
    digests = {}
    for line in hash_text.splitlines():
        fields = line.split()
        if len(fields) == 3 and not line.startswith("#") and fields[2] == file:
            digests[fields[0]] = fields[1]
    return digests


def check_identical(hash_path: Path, source: Source, placed: Path) -> None:
    """SOURCE is byte-identical to Buildroot's download: the package's own
    hash file vouches for the placed file, by every algorithm it lists."""
    digests = known_digests(hash_path.read_text(), source.file) if hash_path.is_file() else {}
    if not digests:
        raise SubstitutionError(
            f"{source.name} is marked identical but {hash_path} lists no hash for it"
        )
    for algorithm, digest in digests.items():
        with placed.open("rb") as stream:
            actual = hashlib.file_digest(stream, algorithm).hexdigest()
        if actual != digest:
            raise SubstitutionError(
                f"{source.name} is marked identical but its {algorithm} is {actual},"
                f" {hash_path} says {digest}"
            )


def apply_source(buildroot: Path, external: Path, source: Source, dl_dir: Path) -> None:
    if source.identical:
        hash_path = hash_file(buildroot, source.package) if (
            buildroot / "package" / source.package
        ).is_dir() else external / "package" / source.package / f"{source.package}.hash"
        check_identical(hash_path, source, dl_dir / source.package / source.file)
        return
    where = f"{source.name}"
    if source.set or source.prepend:
        mk = mk_file(buildroot, source.mk_package or source.package)
        mk.write_text(edit_mk(mk.read_text(), source, f"{where} ({mk.name})"))
    for patch in source.drop_patches:
        path = package_dir(buildroot, source.package) / patch
        if not path.is_file():
            raise SubstitutionError(f"{where}: no patch {patch} to drop")
        path.unlink()
    hashes = hash_file(buildroot, source.package)
    hashes.write_text(with_hash_line(hashes.read_text() if hashes.is_file() else "", source))


def with_hash_line(hash_text: str, source: Source) -> str:
    """A .hash file's text with SOURCE's line instead of any line for its file
    name: Buildroot fails on any listed digest that does not match."""
    kept = [
        line for line in hash_text.splitlines()
        if line.startswith("#") or len(line.split()) != 3 or line.split()[2] != source.file
    ]
    kept += [f"# ramboot scripts/offline-build: {source.why}",
             f"sha256  {source.sha256}  {source.file}"]
    return "\n".join(kept) + "\n"


def apply_host_tool(buildroot: Path, tool: HostTool) -> None:
    fetch.require_host_packages([tool.host_package], f"host-{tool.package}")
    var = tool.package.upper().replace("-", "_")
    links = "\n".join(
        f"\tln -sf {shutil.which(p) or '/usr/bin/' + p} $(HOST_DIR)/bin/{p}" for p in tool.programs
    )
    mk = mk_file(buildroot, tool.package)
    mk.write_text(HOST_TOOL_MK.format(why=tool.why, var=var, links=links))


def apply(table: Table, buildroot: Path, external: Path, dl_dir: Path) -> None:
    """Edit the throwaway copy: versions, hash lines, patches, host tools.
    Packages of the BR2_EXTERNAL tree (EXTERNAL) are only checked, never edited."""
    for source in table.sources:
        apply_source(buildroot, external, source, dl_dir)
    for tool in table.host_tools:
        apply_host_tool(buildroot, tool)


def defconfig_lines(original: str, board: Board, values: dict[str, str]) -> list[str]:
    """The defconfig copy: ORIGINAL without BOARD's `drop` prefixes, plus `add`."""
    kept = []
    for line in original.splitlines():
        key = line.removeprefix("# ").split("=", 1)[0].split(" ", 1)[0]
        if any(key.startswith(prefix) for prefix in board.drop):
            continue
        kept.append(line)
    added = [line.format(**values) for line in board.add]
    return kept + added


def linux_tarball(table: Table) -> str:
    """The file:// location of the kernel source the table substitutes."""
    for source in table.for_package("linux"):
        if source.origin == "host_file":
            return f"file://{source.spec}"
    raise SubstitutionError("the table has no host_file source for package linux")


def write_defconfig(
    original: Path, out: Path, board: Board, values: dict[str, str], dl_dir: Path
) -> Path:
    """OUT/<defconfig>: the board's defconfig with the toolchain and kernel lines changed."""
    lines = defconfig_lines(original.read_text(), board, values)
    lines.append(f'BR2_DL_DIR="{dl_dir}"')
    copy = out / board.defconfig
    copy.write_text("\n".join(lines) + "\n")
    return copy


def make(buildroot: Path, top: Path, out: Path, *args: str) -> list[str]:
    return ["make", "-C", str(buildroot), f"BR2_EXTERNAL={top}", f"O={out}", *args]


def configure(buildroot: Path, top: Path, out: Path, defconfig: Path) -> None:
    fetch.run(make(buildroot, top, out, f"BR2_DEFCONFIG={defconfig}", "defconfig"),
              what=f"Buildroot defconfig from {defconfig}")


def downloads(out: Path) -> dict[str, list[str]]:
    """Every package of OUT's configuration and the files it downloads."""
    result = subprocess.run(
        ["make", "-s", "-C", str(out), "show-info"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SubstitutionError(f"make show-info failed:\n{result.stderr.strip()}")
    info = json.loads(result.stdout)
    files: dict[str, list[str]] = {}
    for name, package in info.items():
        for download in package.get("downloads", []):
            files.setdefault(name, []).append(download["source"])
    return files


def check_covered(table: Table, out: Path, dl_dir: Path) -> None:
    """Every file the configuration downloads is in the table (or a host tool):
    a clear error now, not a failed download an hour into the build."""
    host_tools = {t.package for t in table.host_tools}
    missing = []
    for name, files in sorted(downloads(out).items()):
        package = name.removeprefix("host-")
        if package in host_tools or name in host_tools:
            continue
        for file in files:
            if not (dl_dir / package / file).is_file() and not any(
                (dl_dir / p / file).is_file() for p in (name, package)
            ):
                missing.append(f"{name}: {file}")
    if missing:
        raise SubstitutionError(
            "no substitute in scripts/offline-build.toml for:\n  " + "\n  ".join(missing)
        )


def build(out: Path, make_args: list[str]) -> int:
    env = dict(os.environ)
    # As root, the configure of GNU tar (host-tar) refuses to run without it.
    env["FORCE_UNSAFE_CONFIGURE"] = "1"
    command = ["make", "-C", str(out), *make_args]
    print(f"offline-build: {' '.join(command)}", flush=True)
    return subprocess.run(command, env=env, check=False).returncode
