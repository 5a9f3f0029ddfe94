"""The jinja2 environment: package templates, optionally overridden from a directory.

Outputs are configuration files, not HTML, so autoescaping is off; every value
reaching a template was validated by the inventory first, and the templates
write it through its format's filter (`escape.FILTERS`: `comment`, `word`,
`dnsmasq_string`). StrictUndefined makes
a typo in a template an error instead of an empty string.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ramboot.errors import RambootError
from ramboot.render import escape


def _package_template(name: str) -> str | None:
    resource = resources.files("ramboot").joinpath("templates", *name.split("/"))
    if not resource.is_file():
        return None
    return resource.read_text(encoding="utf-8")


class Templates:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            if not override_dir.is_dir():
                raise RambootError(f"{override_dir}: --templates is not a directory")
            loaders.append(jinja2.FileSystemLoader(override_dir))
        loaders.append(jinja2.FunctionLoader(_package_template))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - config files, not HTML; inputs are validated
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(escape.FILTERS)
        self._cache: dict[str, jinja2.Template] = {}

    def render(self, name: str, **context: Any) -> str:
        template = self._cache.get(name)
        if template is None:
            try:
                template = self._cache[name] = self.env.get_template(name)
            except jinja2.TemplateError as error:
                raise RambootError(f"template {name}: {error}") from None
        try:
            return template.render(**context)
        except jinja2.TemplateError as error:
            raise RambootError(f"template {name}: {error}") from None
