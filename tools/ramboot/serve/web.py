"""The fleet page: static files (HTML, JS, CSS) that read the admin API."""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).with_name("static")


def directory() -> Path:
    return WEB_DIR
