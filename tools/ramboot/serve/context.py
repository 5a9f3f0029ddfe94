"""What every request handler shares: the database, the keys, the inventory
(reloaded on SIGHUP) and the targets that answer from it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ramboot.inventory import Inventory, load_inventory
from ramboot.serve.auth import Keys
from ramboot.serve.db import Database
from ramboot.serve.identify import HostIndex
from ramboot.serve.targets_port import Targets

log = logging.getLogger("ramboot.serve")

TargetsFactory = Callable[[Inventory], Targets]


@dataclass
class Fleet:
    """One loaded inventory and the answers computed from it."""

    index: HostIndex
    targets: Targets


class Context:
    def __init__(self, *, database: Database, keys: Keys, inventory_path: Path,
                 targets_factory: TargetsFactory, discovery: bool = True,
                 tree: Path | None = None) -> None:
        self.database = database
        self.keys = keys
        self.inventory_path = inventory_path
        self.targets_factory = targets_factory
        self.discovery = discovery
        self.tree = tree
        self.fleet = self._load()
        self.changed = asyncio.Event()  # set on every local write, for the live page

    def _load(self) -> Fleet:
        inventory = load_inventory(self.inventory_path)
        return Fleet(HostIndex(inventory), self.targets_factory(inventory))

    def reload(self) -> bool:
        """Re-read the inventory; on any error keep the one in use (and say why).

        Runs in a worker thread (the documents of every host are computed before the
        new inventory is used), then swaps the fleet in one assignment: a request sees
        the old fleet or the new one, whole."""
        try:
            fleet = self._load()
        except Exception as error:
            log.error("inventory %s not reloaded, the previous one stays in use: %s",
                      self.inventory_path, error)
            return False
        self.fleet = fleet
        log.info("inventory %s reloaded: %d host(s)", self.inventory_path,
                 len(fleet.index.by_name))
        return True

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()
