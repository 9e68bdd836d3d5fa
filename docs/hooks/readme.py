"""MkDocs hook: the repository's README.md is the site's home page.

The README links into ``docs/`` from the repository root (``docs/peft.md``); as the site's
``index.md`` those links are made relative to ``docs/`` (``peft.md``), so ``mkdocs build
--strict`` checks them like every other page's links.
"""
from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    """Add README.md, with its links made relative to docs/, as index.md."""
    readme = Path(config["config_file_path"]).parent / "README.md"
    text = readme.read_text(encoding="utf-8").replace("](docs/", "](")
    files.append(File.generated(config, "index.md", content=text))
    return files
