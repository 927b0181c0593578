"""MkDocs hook: publish the root CHANGELOG.md as the docs page changelog.md.

The changelog lives at the repository root (where packagers and readers expect it), outside
docs_dir; generating the page at build time keeps a single copy and needs no plugin.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, "changelog.md", content=CHANGELOG.read_text()))
    return files
