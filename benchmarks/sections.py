"""Writing a benchmark's table into docs/benchmarks.md as its own section."""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, section: str) -> None:
    """Put ``section`` (Markdown starting with its ``## title`` line) into the file at ``path``:
    in place of the section of that title, up to the next ``## `` heading, or at the end."""
    title = section.splitlines()[0]
    doc = path.read_text()
    if title in doc:
        pattern = re.escape(title) + r"\n.*?(?=\n## |\Z)"
        doc = re.sub(pattern, lambda _: section, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + section
    path.write_text(doc)
