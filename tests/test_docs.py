"""The documentation site builds whatever else is installed: with a pandoc on the PATH that
never finishes (as Debian's pandoc 2.17 did on api.md's ``:::`` lines when the notebook plugin
handed it every Markdown page), the strict build still completes."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_with_a_pandoc_that_never_finishes(tmp_path):
    pytest.importorskip("mkdocs")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pandoc = bin_dir / "pandoc"
    pandoc.write_text(
        '#!/bin/sh\ncase "$1" in --version) echo "pandoc 2.17.1.1"; exit 0 ;; esac\nsleep 600\n'
    )
    pandoc.chmod(pandoc.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env["NO_MKDOCS_2_WARNING"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "families" / "index.html").exists()
