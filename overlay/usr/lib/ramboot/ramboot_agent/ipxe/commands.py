"""The iPXE commands the agent implements, with iPXE's options and statuses.

Each handler takes the interpreter and the expanded argv; it returns on
success and raises CommandFailed (a status the script can test with ``||``)
on failure. Options follow iPXE's getopt: they come before the first
non-option word, ``--`` ends them, long options take ``--opt value`` or
``--opt=value``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe.settings import (
    INTEGER_TYPES,
    SettingError,
    format_value,
    numeric_value,
    parse_setting_name,
)
from ramboot_agent.ipxe.status import CommandFailed, Menu, Outcome

if TYPE_CHECKING:
    from ramboot_agent.ipxe.images import Image
    from ramboot_agent.ipxe.interpreter import Interpreter

log = logging.getLogger("ramboot")

Options = dict[str, str | bool]
# long name -> (short letter, takes an argument)
Spec = dict[str, tuple[str, bool]]


def getopt(argv: list[str], spec: Spec, min_args: int, max_args: int | None,
           usage: str) -> tuple[Options, list[str]]:
    """iPXE's getopt_long: options end at the first word not starting with "-"
    (so an expanded "-2" is an option) or after "--"; long options match
    whole names only."""
    options: Options = {}
    index = 1
    shorts = {short: (long, takes) for long, (short, takes) in spec.items()}
    while index < len(argv) and argv[index].startswith("-"):
        word = argv[index]
        index += 1
        if word == "--":
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name not in spec:
                raise CommandFailed(f'unrecognised option "--{name}"')
            takes = spec[name][1]
            if eq and not takes:
                raise CommandFailed(f'option "{name}" takes no argument')
            if takes and not eq:
                if index >= len(argv):
                    raise CommandFailed(f'option "--{name}" needs a value')
                value = argv[index]
                index += 1
            options[name] = value if takes else True
            continue
        letters = word[1:]
        if not letters:  # iPXE's getopt takes a lone "-" as an option too
            raise CommandFailed('unrecognised option "-"')
        while letters:
            letter, letters = letters[0], letters[1:]
            if letter not in shorts:
                raise CommandFailed(f'unrecognised option "-{letter}"')
            name, takes = shorts[letter]
            if takes:
                if not letters:
                    if index >= len(argv):
                        raise CommandFailed(f'option "-{letter}" needs a value')
                    letters = argv[index]
                    index += 1
                options[name] = letters
                letters = ""
            else:
                options[name] = True
    args = argv[index:]
    if len(args) < min_args or (max_args is not None and len(args) > max_args):
        raise CommandFailed(f"usage: {argv[0]} {usage}")
    return options, args


def parse_integer(text: str) -> int:
    """iPXE's parse_integer: strtoul base 0, the whole word, as an unsigned int.

    strtoul takes a sign, so ``inc i -1`` adds 0xffffffff: the same as
    subtracting one once stored in a setting of 32 bits or fewer.
    """
    match = re.fullmatch(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not match:
        raise CommandFailed(f'"{text}": invalid integer value')
    sign, digits = match.groups()
    value = int(digits, 8) if re.fullmatch("0[0-7]+", digits) else int(digits, 0)
    return (-value if sign == "-" else value) % (1 << 32)


def _option_str(options: Options, name: str) -> str | None:
    value = options.get(name)
    return value if isinstance(value, str) else None


# --- output and flow ---------------------------------------------------------


def cmd_echo(ip: Interpreter, argv: list[str]) -> None:
    options, args = getopt(argv, {"n": ("n", False)}, 0, None, "[-n] [...]")
    ip.print(" ".join(args) + ("" if options.get("n") else "\n"))


def cmd_exit(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 0, 1, "[<status>]")
    ip.request_exit(argv, parse_integer(args[0]) if args else 0)


def cmd_goto(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 1, 1, "<label>")
    ip.goto(args[0])


def cmd_isset(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 1, 1, "<value>")
    if not args[0]:
        raise CommandFailed("not set")


def cmd_iseq(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 2, 2, "<value1> <value2>")
    if args[0] != args[1]:
        raise CommandFailed("not equal")


def cmd_sleep(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 1, 1, "<seconds>")
    ip.sleep(parse_integer(args[0]))


def cmd_prompt(ip: Interpreter, argv: list[str]) -> None:
    # No console input in the agent: behave as if the prompt timed out at once.
    _, args = getopt(argv, {"key": ("k", True), "timeout": ("t", True)}, 0, None,
                     "[--key <key>] [--timeout <timeout>] [<text>]")
    ip.print(" ".join(args) + "\n")
    raise CommandFailed("no console input (non-interactive)")


def cmd_read(ip: Interpreter, argv: list[str]) -> None:
    getopt(argv, {"timeout": ("t", True)}, 1, 1, "<setting>")
    raise CommandFailed("no console input (non-interactive)")


# --- settings ------------------------------------------------------------------


def cmd_set(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 1, None, "<setting> <value>")
    ip.store_setting(args[0], " ".join(args[1:]))


def cmd_clear(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 1, 1, "<setting>")
    ip.store_setting(args[0], "")


def cmd_inc(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 1, 2, "<setting> [<increment>]")
    increment = parse_integer(args[1]) if len(args) > 1 else 1
    try:
        name = parse_setting_name(args[0])
    except SettingError as error:
        raise CommandFailed(str(error)) from None
    stored = ip.settings.lookup(name)
    type_name = name.type or (stored.type if stored else None) or "int32"
    if type_name not in INTEGER_TYPES:
        raise CommandFailed(f"could not store {args[0]!r}: not an integer setting")
    try:
        value = numeric_value(stored.raw, signed=type_name.startswith("int")) if stored else 0
    except SettingError:
        value = 0
    width = {"8": 1, "16": 2, "32": 4}[type_name.lstrip("uint")]
    raw = ((value + increment) % (1 << (8 * width))).to_bytes(width, "big")
    ip.settings.store(name, raw, type_name)


def cmd_show(ip: Interpreter, argv: list[str]) -> None:
    options, args = getopt(argv, {"quiet": ("q", False)}, 1, 1, "<setting>")
    try:
        name = parse_setting_name(args[0])
    except SettingError as error:
        raise CommandFailed(str(error)) from None
    stored = ip.settings.lookup(name)
    value = ip.settings.fetch(name)
    if stored is None or value is None:
        raise CommandFailed(f'could not find "{name.name}"')
    type_name = name.type or stored.type or "string"
    origin = ip.settings.origin(name)
    label = f"{origin + '/' if origin else ''}{name.name}:{type_name}"
    ip.print(value + "\n" if options.get("quiet") else f"{label} = {value}\n")


# --- images ------------------------------------------------------------------

_IMAGE_OPTIONS: Spec = {
    "name": ("n", True),
    "timeout": ("t", True),
    "quiet": ("q", False),
    "autofree": ("a", False),
}


def _acquire_image(ip: Interpreter, argv: list[str], *, fetch_only: bool, min_args: int,
                   replace_ok: bool = False) -> tuple[Image, Options]:
    spec = dict(_IMAGE_OPTIONS)
    if replace_ok:
        spec["replace"] = ("r", False)
    options, args = getopt(argv, spec, min_args, None, "<uri|image> [<arguments>...]")
    if args:
        name = _option_str(options, "name")
        image = ip.download(args[0], name=name) if fetch_only else ip.acquire(args[0])
        if name:
            image.name = name
        if len(args) > 1:
            image.cmdline = " ".join(args[1:])
    elif ip.images.selected is not None:
        image = ip.images.selected
    else:
        raise CommandFailed("no image selected")
    if options.get("autofree"):
        image.autofree = True
    return image, options


def cmd_imgfetch(ip: Interpreter, argv: list[str]) -> None:
    _acquire_image(ip, argv, fetch_only=True, min_args=1)


def cmd_imgselect(ip: Interpreter, argv: list[str]) -> None:
    image, _ = _acquire_image(ip, argv, fetch_only=False, min_args=1)
    ip.images.selected = image


def cmd_imgexec(ip: Interpreter, argv: list[str]) -> None:
    image, options = _acquire_image(ip, argv, fetch_only=False, min_args=0, replace_ok=True)
    ip.execute(image, replace=bool(options.get("replace")))


def cmd_imgargs(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, _IMAGE_OPTIONS, 1, None, "<image> [<arguments>...]")
    image = ip.acquire(args[0])
    image.cmdline = " ".join(args[1:]) or None


def _named_images(ip: Interpreter, argv: list[str]) -> list[Image]:
    _, args = getopt(argv, {}, 0, None, "[<image>...]")
    if not args:
        return list(ip.images)
    found = []
    for name in args:
        image = ip.images.find(name)
        if image is None:
            raise CommandFailed(f'"{name}": no such image')
        found.append(image)
    return found


def cmd_imgfree(ip: Interpreter, argv: list[str]) -> None:
    for image in _named_images(ip, argv):
        ip.images.unregister(image)


def _ipxe_type(image: Image) -> str | None:
    """The image type iPXE's imgstat shows: scripts and the kernels it knows."""
    if image.is_script:
        return "script"
    from ramboot_agent.kernel_image import NotAKernel, identify  # noqa: PLC0415

    try:
        with image.path.open("rb") as stream:
            return identify(stream.read(64 * 1024)).ipxe_type
    except (OSError, NotAKernel):
        return None


def cmd_imgstat(ip: Interpreter, argv: list[str]) -> None:
    # iPXE's usr/imgmgmt.c imgstat(): name, size, type and tags, then the command line.
    for image in _named_images(ip, argv):
        kind = _ipxe_type(image)
        line = f"{image.name} : {image.size} bytes" + (f" [{kind}]" if kind else "")
        if image is ip.images.selected:
            line += " [SELECTED]"
        if image.trusted:
            line += " [TRUSTED]"
        if image.autofree:
            line += " [AUTOFREE]"
        if image.cmdline:
            line += f' "{image.cmdline}"'
        ip.print(line + "\n")


# --- network and machine -----------------------------------------------------


def interfaces_exist(argv_interfaces: list[str]) -> None:
    """The agent's one interface is iPXE's net0 (netX names it too)."""
    for name in argv_interfaces:
        if name not in ("net0", "netX"):
            raise CommandFailed(f'"{name}": no such interface (the agent has net0 only)')


def cmd_dhcp(ip: Interpreter, argv: list[str]) -> None:
    # The agent's network is already up: report whether it has a lease.
    _, args = getopt(argv, {"timeout": ("t", True), "configurator": ("c", True)}, 0, None,
                     "[<interface>...]")
    interfaces_exist(args)
    if not ip.has_lease():
        raise CommandFailed("no DHCP lease (the agent configures the network before scripts)")


def cmd_ifopen(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 0, None, "[<interface>...]")
    interfaces_exist(args)


def cmd_ifstat(ip: Interpreter, argv: list[str]) -> None:
    getopt(argv, {}, 0, None, "[<interface>...]")
    mac = ip.lookup_setting("net0/mac") or "unknown"
    state = "open" if ip.has_lease() else "closed"
    ip.print(f"net0: {mac} using agent on agent ({state})\n")


def cmd_route(ip: Interpreter, argv: list[str]) -> None:
    getopt(argv, {}, 0, 0, "")
    address = ip.lookup_setting("net0/ip")
    if address:
        netmask = ip.lookup_setting("net0/netmask") or "?"
        gateway = ip.lookup_setting("net0/gateway")
        via = f" gw {gateway}" if gateway else ""
        ip.print(f"net0: {address}/{netmask}{via}\n")


def cmd_cpuid(ip: Interpreter, argv: list[str]) -> None:
    options, args = getopt(argv, {"ext": ("e", False), "ecx": ("c", False)}, 1, 1, "<bit>")
    bit = parse_integer(args[0])
    register = ("ext-" if options.get("ext") else "") + ("ecx" if options.get("ecx") else "edx")
    flag = _CPUID_FLAGS.get((register, bit))
    if flag is None:
        raise ScriptError(ip.current.script.url, ip.current.line.number if ip.current.line
                          else None, f"cpuid: {register} bit {bit} is not known to the agent")
    flags = ip.cpu_flags if ip.cpu_flags is not None else cpu_flags()
    if flag not in flags:
        raise CommandFailed(f"CPU feature {flag} absent")


# (register, bit) -> the /proc/cpuinfo flag reporting it
_CPUID_FLAGS = {
    ("ext-edx", 29): "lm",
    ("ext-edx", 20): "nx",
    ("ext-ecx", 0): "lahf_lm",
    ("ext-ecx", 2): "svm",
    ("edx", 6): "pae",
    ("ecx", 5): "vmx",
    ("ecx", 31): "hypervisor",
}


def cpu_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """x86 feature flags of this machine (empty elsewhere: cpuid fails)."""
    try:
        text = path.read_text()
    except OSError:
        return frozenset()
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return frozenset(match.group(1).split()) if match else frozenset()


def cmd_shell(ip: Interpreter, argv: list[str]) -> None:
    ip.finish(Outcome.SHELL)


def cmd_reboot(ip: Interpreter, argv: list[str]) -> None:
    getopt(argv, {"warm": ("w", False)}, 0, 0, "[--warm]")
    ip.finish(Outcome.REBOOT)


def cmd_poweroff(ip: Interpreter, argv: list[str]) -> None:
    getopt(argv, {}, 0, 0, "")
    ip.finish(Outcome.POWEROFF)


def cmd_shim(ip: Interpreter, argv: list[str]) -> None:
    # iPXE's shim is a dummy command outside EFI; kexec needs no Secure Boot shim.
    log.debug("shim: nothing to do (the agent boots kernels with kexec)")


def cmd_cosmetic(ip: Interpreter, argv: list[str]) -> None:
    # Console colours and fonts: nothing to draw on a headless agent.
    log.debug("ignoring cosmetic command %s", argv[0])


# --- menus and parameters ------------------------------------------------------


def cmd_menu(ip: Interpreter, argv: list[str]) -> None:
    options, args = getopt(argv, {"name": ("n", True), "delete": ("d", False)}, 0, None,
                           "[--name <name>] [--delete] [<title>]")
    name = _option_str(options, "name")
    if options.get("delete"):
        ip.menus.pop(name, None)
    else:
        ip.menus[name] = Menu(" ".join(args))


def cmd_item(ip: Interpreter, argv: list[str]) -> None:
    options, args = getopt(argv, {"menu": ("m", True), "key": ("k", True),
                                  "default": ("d", False), "gap": ("g", False),
                                  "secret": ("s", False)}, 0, None,
                           "[--menu <menu>] [--key <key>] [--default] [<label>|--gap [<text>]]")
    menu = ip.menus.get(_option_str(options, "menu"))
    if menu is None:
        raise CommandFailed("no such menu")
    # A gap, or an item with no label (`item` alone: an empty line), cannot be chosen.
    if options.get("gap") or not args:
        return
    menu.items.append((args[0], " ".join(args[1:]), bool(options.get("default"))))


def cmd_choose(ip: Interpreter, argv: list[str]) -> None:
    # Nobody is at the console: take what iPXE highlights first, as its timeout
    # would (hci/tui/menu_ui.c show_menu): the --default label if it is an
    # item, else without --default the item marked --default, else the first item.
    options, args = getopt(argv, {"menu": ("m", True), "default": ("d", True),
                                  "timeout": ("t", True), "retimeout": ("r", True),
                                  "keep": ("k", False)}, 1, 1,
                           "[--menu <menu>] [--default <label>] [--timeout <ms>] <setting>")
    ip.setting_name_ok(args[0])
    name = _option_str(options, "menu")
    menu = ip.menus.get(name)
    if menu is None:
        raise CommandFailed("no such menu")
    labels = [label for label, _, _ in menu.items]
    wanted = _option_str(options, "default")
    if wanted is None:
        wanted = next((label for label, _, default in menu.items if default), None)
    if not options.get("keep"):
        ip.menus.pop(name, None)
    if not labels:
        raise CommandFailed("the menu has no item to choose")
    chosen = wanted if wanted in labels else labels[0]
    if wanted is not None and wanted not in labels:
        log.info("choose: %r is not an item: taking the first, %r, as iPXE does", wanted, chosen)
    ip.store_setting(args[0], chosen)


def cmd_params(ip: Interpreter, argv: list[str]) -> None:
    options, _ = getopt(argv, {"name": ("n", True), "delete": ("d", False)}, 0, 0,
                        "[--name <name>] [--delete]")
    name = _option_str(options, "name")
    if options.get("delete"):
        ip.params.pop(name, None)
    else:
        ip.params[name] = []


def cmd_param(ip: Interpreter, argv: list[str]) -> None:
    options, args = getopt(argv, {"params": ("p", True), "header": ("H", False)}, 1, None,
                           "[--params <params>] <key> [<value>]")
    params = ip.params.get(_option_str(options, "params"))
    if params is None:
        raise CommandFailed("no such parameter list")
    params.append((args[0], " ".join(args[1:])))


COMMANDS: dict[str, Callable[[Interpreter, list[str]], None]] = {
    "echo": cmd_echo,
    "exit": cmd_exit,
    "goto": cmd_goto,
    "isset": cmd_isset,
    "iseq": cmd_iseq,
    "sleep": cmd_sleep,
    "prompt": cmd_prompt,
    "read": cmd_read,
    "set": cmd_set,
    "clear": cmd_clear,
    "inc": cmd_inc,
    "show": cmd_show,
    "imgfetch": cmd_imgfetch,
    "module": cmd_imgfetch,
    "initrd": cmd_imgfetch,
    "imgselect": cmd_imgselect,
    "imgload": cmd_imgselect,
    "kernel": cmd_imgselect,
    "imgexec": cmd_imgexec,
    "chain": cmd_imgexec,
    "boot": cmd_imgexec,
    "imgargs": cmd_imgargs,
    "imgfree": cmd_imgfree,
    "imgstat": cmd_imgstat,
    "dhcp": cmd_dhcp,
    "ifconf": cmd_dhcp,
    "ifopen": cmd_ifopen,
    "ifclose": cmd_ifopen,
    "ifstat": cmd_ifstat,
    "route": cmd_route,
    "cpuid": cmd_cpuid,
    "shell": cmd_shell,
    "reboot": cmd_reboot,
    "poweroff": cmd_poweroff,
    "shim": cmd_shim,
    "colour": cmd_cosmetic,
    "cpair": cmd_cosmetic,
    "console": cmd_cosmetic,
    "menu": cmd_menu,
    "item": cmd_item,
    "choose": cmd_choose,
    "params": cmd_params,
    "param": cmd_param,
}

__all__ = ["COMMANDS", "cpu_flags", "format_value", "getopt", "parse_integer"]
