"""MkDocs hook: a site that reads offline, with the notebooks' outputs.

* Formulas become MathML when the site is built (``latex2mathml``), so a reader's browser shows
  them without fetching a script: the ``\\(...\\)``/``\\[...\\]`` spans of ``pymdownx.arithmatex``
  on Markdown and API pages, and the ``$...$``/``$$...$$`` of the notebooks' Markdown cells.
  MathJax's loader, which the notebook template adds, is dropped.
* A notebook page is rendered from the executed copy in ``build/notebooks/`` (``make notebooks``
  runs each notebook once, as a test, and keeps its outputs) when that copy is at least as new as
  the committed notebook; otherwise from the committed notebook, without outputs.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from latex2mathml.converter import convert

EXECUTED = Path(__file__).resolve().parents[2] / "build" / "notebooks"

ARITHMATEX_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
ARITHMATEX_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)
NOTEBOOK_MARKDOWN = re.compile(
    r'(<div class="[^"]*jp-RenderedMarkdown[^"]*"[^>]*>)(.*?)(</div>)', re.S
)
DISPLAY_DOLLARS = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE_DOLLARS = re.compile(r"(?<![\\$])\$(?!\s)([^$]+?)(?<!\s)\$")
MATHJAX_SCRIPTS = re.compile(
    r"<!-- Load mathjax -->.*?</script>\s*<!-- MathJax configuration -->.*?</script>", re.S
)


def mathml(tex: str, display: bool) -> str:
    """MathML for a TeX fragment as it appears in HTML (entities escaped)."""
    return convert(html.unescape(tex).strip(), display="block" if display else "inline")


def notebook_markdown(match: re.Match) -> str:
    opening, body, closing = match.groups()
    body = DISPLAY_DOLLARS.sub(lambda m: mathml(m.group(1), True), body)
    body = INLINE_DOLLARS.sub(lambda m: mathml(m.group(1), False), body)
    return opening + body + closing


def on_files(files, config):
    for file in files:
        if not file.src_uri.endswith(".ipynb") or file.abs_src_path is None:
            continue
        executed = EXECUTED / Path(file.src_uri).name
        committed = Path(file.abs_src_path)
        if executed.exists() and executed.stat().st_mtime >= committed.stat().st_mtime:
            file.abs_src_path = str(executed)
    return files


def on_post_page(output: str, page, config) -> str:
    output = ARITHMATEX_BLOCK.sub(lambda m: mathml(m.group(1), True), output)
    output = ARITHMATEX_INLINE.sub(lambda m: mathml(m.group(1), False), output)
    if page.file.src_uri.endswith(".ipynb"):
        output = MATHJAX_SCRIPTS.sub("", output)
        output = NOTEBOOK_MARKDOWN.sub(notebook_markdown, output)
    return output
