"""What a real client receives from each real DHCP server, for every character class.

`kea-dhcp4 -t` and `dnsmasq --test` accepting a file proves little: Kea's
default CSV option data cut a URL at its first comma, and a server may read
quotes, `#` or `$` its own way. Here each rendered configuration is served by
the real server in a namespace and busybox udhcpc reports the bytes it got.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib import netlab
from tests.tools.render.helpers import make_images, render_text
from tests.tools.render.test_netns import _hex, _kea_dict, _udhcpc

pytestmark = pytest.mark.netns

# RFC 3986: unreserved (A-Z a-z 0-9 - . _ ~), gen-delims (: / ? # [ ] @),
# sub-delims (! $ & ' ( ) * + , ; =) and %-escapes, each in path, query and
# fragment, commas where CSV parsers split.
URL_ALL = ("http://192.0.2.1:8080/Az09-._~/!$&'()*+,;=:@%41%7e/a,b,,c"
           "?q=1,2;k=$v&w='x'(y)*+!@:/?,#f,r!ag$&'()*+,;=:@/?")
URL_V6 = "https://[2001:db8::1]:8443/ev,ents;x=1?a=b,c&d=$e#x,y"
# http_base may not hold a query or fragment: paths are appended to it.
BASE_ALL = "http://192.0.2.1:8080/Az09-._~/!$&'()*+,;=:@%41%7e/a,b,,c"
DOMAIN = "Fleet-2.a1.example-9.test"
NAME = "Srv-01-b9"
MAC = "52:54:00:12:34:56"

INVENTORY = f"""
[servers]
tftp = "192.0.2.1"
http_base = "{BASE_ALL}"
dhcp_interface = "srv0"
[network]
subnet = "192.0.2.0/24"
pool = ["192.0.2.100", "192.0.2.199"]
router = "192.0.2.1"
domain = "{DOMAIN}"
[[hosts]]
name = "{NAME}"
family = "x86_64"
macs = ["{MAC}"]
ip = "192.0.2.31"
target = {{ kind = "script", url = "{URL_ALL}" }}
report_url = "{URL_V6}"
"""


@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_every_url_name_and_domain_character_arrives_intact(
    tmp_path: Path, server: str
) -> None:
    netlab.require_netns("kea-dhcp4" if server == "kea" else "dnsmasq", "udhcpc")
    out = tmp_path / "out"
    render_text(INVENTORY, make_images(tmp_path / "images"), out, tmp_path)
    with netlab.veth_lab(client_mac=MAC) as lab:
        if server == "kea":
            netlab.start_kea(lab.server, _kea_dict(out / "dhcp/kea-dhcp4.json", tmp_path),
                             tmp_path)
        else:
            netlab.start_dnsmasq(lab.server, lab.server_if, tmp_path,
                                 [f"--conf-file={out / 'dhcp/dnsmasq.conf'}"])
        env = _udhcpc(lab, tmp_path, "-O", "hostname", "-O", "domain")
    assert env["ip"] == "192.0.2.31"
    # Option 224 is the host's stage 1 (udhcpc is not the agent), under that base.
    assert env["opt224"] == _hex(f"{BASE_ALL}/stage1/{NAME}.ipxe"), bytes.fromhex(env["opt224"])
    # The target's URL, with its query and fragment, is what its stage 2 chains to.
    assert f"chain --autofree {URL_ALL} ||" in (out / f"http/stage2/{NAME}.ipxe").read_text()
    assert env["opt225"] == _hex(URL_V6), bytes.fromhex(env["opt225"])
    assert env["domain"] == DOMAIN
    # Both servers send the reserved name lower-cased (DNS names are case-blind).
    assert env["hostname"] == NAME.lower()
