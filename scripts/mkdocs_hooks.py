"""MkDocs hook: a nav page that does not exist yet (being written) gets a one-line placeholder, so the strict
build fails only on real problems (broken links, bad anchors), not on a page someone is still writing."""

from __future__ import annotations

import logging

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.placeholders")


def _nav_paths(items) -> list[str]:
    out = []
    for item in items or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _nav_paths(value) if isinstance(value, list) else [value] if isinstance(value, str) else []
    return out


def on_files(files, config):
    for path in _nav_paths(config["nav"]):
        if path.endswith(".md") and files.get_file_from_path(path) is None:
            log.info("placeholder page for %s (not written yet)", path)
            title = path.rsplit("/", 1)[-1][:-3].replace("-", " ").capitalize()
            files.append(File.generated(config, path, content=f"# {title}\n\nThis page is being written.\n"))
    return files
