"""MkDocs hook (``hooks:`` in mkdocs.yml): pages that show a section of the README.

The README's pitch, its two commands and its quickstart are what a new user reads first, and
CI tests that text (the quickstart check pastes its settings into a new project). The site
shows the same text instead of a copy that could drift: the README marks a section with

    <!-- site: quickstart -->
    ...
    <!-- /site: quickstart -->

and a page asks for it with a line of its own, ``<!-- readme: quickstart -->``. The included
text's links are made to work from the page: ``docs/api.md#x`` becomes ``api.md#x``, and a
link to another file of the repository (``CHANGELOG.md``, ``bench/run.py``), which the site
has no copy of, becomes its text in code style. A section or a marker that is missing fails
the build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

INCLUDE = re.compile(r"^<!-- readme: (?P<name>[\w-]+) -->[ \t]*$", re.MULTILINE)
LINK = re.compile(r"(?P<image>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:", "#")


def readme_section(readme: str, name: str) -> str:
    """The README's text between ``<!-- site: name -->`` and ``<!-- /site: name -->``."""
    start, end = f"<!-- site: {name} -->", f"<!-- /site: {name} -->"
    if readme.count(start) != 1 or readme.count(end) != 1:
        raise PluginError(f"README.md must mark the section {name!r} once with {start} … {end}")
    return readme.split(start, 1)[1].split(end, 1)[0].strip("\n")


def _relink(match: re.Match[str]) -> str:
    image, text, target = match["image"], match["text"], match["target"]
    if target.startswith(EXTERNAL):
        return match[0]
    if target.startswith("docs/"):
        return f"{image}[{text}]({target.removeprefix('docs/')})"
    return text if text.startswith("`") else f"`{text}`"


def relink(markdown: str) -> str:
    """README-relative links made relative to a page of ``docs/``."""
    return LINK.sub(_relink, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each ``<!-- readme: name -->`` line by that section of the README."""
    if not INCLUDE.search(markdown):
        return markdown
    readme = (Path(config.config_file_path).parent / "README.md").read_text(encoding="utf-8")
    return INCLUDE.sub(lambda m: relink(readme_section(readme, m["name"])), markdown)
