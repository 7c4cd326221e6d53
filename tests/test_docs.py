"""The documentation site as a reader gets it: built whatever else is installed, readable
offline (formulas rendered to MathML at build time, no script fetched), and showing every
notebook's outputs and figures.

The site is built once, with a ``pandoc`` on the PATH that never finishes: Debian's pandoc 2.17
spun forever on api.md's ``:::`` lines when the notebook plugin handed it every Markdown page.
The notebook pages come from the executed copies that ``make notebooks`` leaves in
``build/notebooks`` (``make test`` runs it first)."""

import json
import os
import re
import stat
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


class VisibleText(HTMLParser):
    """The text a reader sees: outside scripts, styles, code and rendered math."""

    HIDDEN = {"script", "style", "code", "pre", "math"}

    def __init__(self) -> None:
        super().__init__()
        self.hidden = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in self.HIDDEN

    def handle_endtag(self, tag):
        self.hidden -= tag in self.HIDDEN

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = VisibleText()
    parser.feed(page)
    return "".join(parser.parts)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    executed = ROOT / "build" / "notebooks"
    missing = [nb.name for nb in NOTEBOOKS if not (executed / nb.name).exists()]
    assert not missing, f"not in build/notebooks (run make notebooks): {missing}"
    tmp = tmp_path_factory.mktemp("docs")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    pandoc = bin_dir / "pandoc"
    pandoc.write_text(
        '#!/bin/sh\ncase "$1" in --version) echo "pandoc 2.17.1.1"; exit 0 ;; esac\nsleep 600\n'
    )
    pandoc.chmod(pandoc.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env["NO_MKDOCS_2_WARNING"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "site"


def test_docs_build_with_a_pandoc_that_never_finishes(site):
    assert (site / "families" / "index.html").exists()


def test_no_page_shows_raw_tex_or_fetches_a_script(site):
    pages = sorted(site.rglob("index.html"))
    assert len(pages) >= 15
    formulas = 0
    for page in pages:
        html = page.read_text()
        text = visible_text(html)
        raw = re.findall(r".{0,30}(?:\\\(|\\\[|\$\$|\$[^\s$]).{0,30}", text)
        assert not raw, f"{page.relative_to(site)} shows unrendered TeX: {raw[:3]}"
        assert not re.findall(r"<script[^>]+src=\"https?:", html), page
        # latex2mathml leaves a command it does not know as text, e.g. <mi>\arg</mi>
        assert not re.findall(r"<m[a-z]+[^>]*>\\[A-Za-z]+<", html), page
        formulas += html.count("<math")
    assert formulas > 300


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_pages_show_outputs_and_figures(site, notebook):
    html = (site / "notebooks" / notebook.stem / "index.html").read_text()
    cells = json.loads(notebook.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    outputs = html.count('class="jp-OutputArea-child')
    assert outputs >= len(code) // 2, f"{notebook.name}: {outputs} outputs for {len(code)} cells"
    plots = sum("plt." in "".join(cell["source"]) for cell in code)
    figures = html.count('src="data:image/png')
    assert figures >= plots, f"{notebook.name}: {figures} figures, {plots} cells that plot"
