"""`ramboot serve`: run the control plane (uvicorn serving the Starlette app)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ramboot.errors import RambootError
from ramboot.serve.auth import Keys
from ramboot.serve.context import Context
from ramboot.serve.db import Database
from ramboot.serve.inventory_targets import InventoryTargets
from ramboot.tokens import read_secret, read_token

DEFAULT_DATABASE = "sqlite:///var/lib/ramboot/serve.db"


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r}: expected ADDRESS:PORT, e.g. 0.0.0.0:8080")
    return host.strip("[]"), int(port)


@click.command("serve")
@click.argument("inventory", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--database", default=DEFAULT_DATABASE, show_default=True, envvar="RAMBOOT_DATABASE",
              help="sqlite:///PATH (or a path), or postgresql://... for several replicas.")
@click.option("--machine-secret", required=True, type=click.Path(path_type=Path, dir_okay=False),
              envvar="RAMBOOT_MACHINE_SECRET",
              help="File with the fleet secret that host and fleet tokens derive from.")
@click.option("--admin-token", "admin_token_file", required=True, envvar="RAMBOOT_ADMIN_TOKEN_FILE",
              type=click.Path(path_type=Path, dir_okay=False), help="File with the admin token.")
@click.option("--listen", default="127.0.0.1:8080", show_default=True,
              help="ADDRESS:PORT to listen on.")
@click.option("--tree", type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Also serve this rendered http/ tree (Range requests; small fleets).")
@click.option("--report-url", help="The events URL machines are told (discovery boots).")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Serve HTTPS with this certificate (PEM, with its chain).")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The certificate's private key (PEM).")
@click.option("--discovery/--no-discovery", default=True, show_default=True,
              help="Answer machines missing from the inventory (hardware report) or 404 them.")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def serve(*, inventory: Path, database: str, machine_secret: Path, admin_token_file: Path,
          listen: str, tree: Path | None, report_url: str | None, tls_cert: Path | None,
          tls_key: Path | None, discovery: bool, access_log: bool) -> None:
    """Answer both boot stages and store events for the fleet in INVENTORY."""
    import uvicorn  # noqa: PLC0415 (only `serve` needs the server)

    from ramboot.serve.app import create_app  # noqa: PLC0415

    if (tls_cert is None) != (tls_key is None):
        raise RambootError("--tls-cert and --tls-key go together")
    address, port = _listen(listen)
    keys = Keys(machine_secret=read_secret(machine_secret),
                admin_token=read_token(admin_token_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    store = Database(database)
    store.migrate()  # a database that cannot be used is one clear error, before listening
    ctx = Context(database=store, keys=keys, inventory_path=inventory,
                  targets_factory=lambda inv: InventoryTargets(
                      inv, machine_secret=keys.machine_secret, report_url=report_url, tree=tree),
                  discovery=discovery, tree=tree)
    config = uvicorn.Config(
        create_app(ctx), host=address, port=port, access_log=access_log, log_level="info",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        timeout_keep_alive=30, limit_concurrency=2000, backlog=2048,
        http="auto", loop="auto", lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise RambootError(f"serve did not start on {listen} (see the log above)")
