"""Generated text in the docs: every section matches its committed source; a hand edit is caught."""
import shutil
from pathlib import Path

from PETITELib.reports import GENERATORS, documents, render, update_docs

REPO = Path(__file__).resolve().parents[1]


def test_every_generated_section_in_the_docs_matches_its_source():
    assert update_docs(REPO, check=True) == []  # run `python -m PETITELib.reports docs` after a change
    used = {name for path in documents(REPO) for name in GENERATORS
            if f"<!-- petite:{name} -->" in path.read_text(encoding="utf-8")}
    assert used == set(GENERATORS)  # every generator feeds at least one page


def test_a_figure_edited_by_hand_is_reported(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "README.md", root / "README.md")
    page = root / "docs" / "simulator.md"
    text = page.read_text(encoding="utf-8")
    edited = text.replace("x 1.04", "x 1.40", 1)
    assert edited != text
    page.write_text(edited, encoding="utf-8")
    assert update_docs(root, check=True) == [page]
    assert update_docs(root) == [page] and page.read_text(encoding="utf-8") == text  # regenerated


def test_unknown_sections_are_left_alone():
    text = "a\n<!-- petite:not-a-generator -->\nkept\n<!-- /petite:not-a-generator -->\n"
    assert render(text, REPO) == text
