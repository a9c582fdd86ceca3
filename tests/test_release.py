"""One version source for the package, and a CHANGELOG that covers what carries a version: the
package, every classified-record schema and every model card version (shipped or kept)."""
from __future__ import annotations

import re
import tomllib

from engines.cards import load_card
from stream import __version__
from tests.conftest import REPO


def test_pyproject_reads_the_version_from_the_package():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "stream.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_changelog_covers_the_package_the_schemas_and_the_cards():
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"### {__version__} " in changelog and "### Unreleased" in changelog
    for schema in sorted((REPO / "schemas" / "classified").glob("v*_*.avsc")):
        major, minor = schema.stem[1:].split("_")
        assert f"### v{major}.{minor} " in changelog, schema.name
    cards = sorted((REPO / "engines" / "cards").glob("*.toml")) + sorted((REPO / "engines" / "cards" / "versions").glob("*.toml"))
    for path in cards:
        card = load_card(path)
        lower = changelog.lower()
        assert f"**{card.version}**".lower() in lower or f"{card.name} {card.version}**".lower() in lower, (card.name, card.version)
