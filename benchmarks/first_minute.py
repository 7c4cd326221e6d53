"""Time to first result: what a new user waits for, each in a fresh Python process (import and
compilation included), float32, without the persistent compilation cache unless a row says so.

    python benchmarks/first_minute.py [--markdown-section FILE]

Prints a Markdown table; with ``--markdown-section`` replaces the section "Time to first
result" of FILE (``docs/benchmarks.md``), which ``make bench`` does.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SELECT_FAITHFUL = """
import jax, jaxem
X, _ = jaxem.load_faithful()
jaxem.select(X, range(1, 7), key=jax.random.key(0))
"""

SELECT_1000x5 = """
import jax, numpy as np, jaxem
rng = np.random.default_rng(0)
groups = [(0, 1, 400), (4, 2, 350), (-5, 0.5, 250)]
X = np.concatenate([rng.normal(m, s, (n, 5)) for m, s, n in groups])
X = X * np.array([1, 10, 100, 0.1, 1000])
jaxem.select(X, range(1, 7), key=jax.random.key(0))
"""

FIT_AFTER_INIT = """
import time, jax, jaxem
X, _ = jaxem.load_faithful()
model = jaxem.GaussianMixture(2, "full")
params = jax.block_until_ready(model.init(jax.random.key(0), X))
t = time.perf_counter()
jax.block_until_ready(jaxem.fit(model, X, params, tol=1e-6))
print("FIT", time.perf_counter() - t)
"""


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(import jax\nimport jaxem\n.*?)```", text, re.S)
    return block.group(1)


def timed(argv: list[str], env: dict, cwd: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markdown-section", type=Path)
    args = parser.parse_args()
    python = sys.executable
    jaxem_cli = [python, "-m", "jaxem"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, JAXEM_NO_CACHE="1", JAX_PLATFORMS="cpu")
        cached = dict(os.environ, JAXEM_CACHE_DIR=str(Path(tmp) / "cache"), JAX_PLATFORMS="cpu")
        data = Path(tmp) / "faithful.csv"
        data.write_text((ROOT / "jaxem" / "data" / "faithful.csv").read_text())
        select_cli = jaxem_cli + ["select", str(data), "-k", "1-6", "--quiet"]
        cases = [
            ("`select` on Old Faithful (24 cells)", 10, [python, "-c", SELECT_FAITHFUL], env),
            ("`select` on 1,000 x 5 (24 cells)", 15, [python, "-c", SELECT_1000x5], env),
            ("README's Python example", 20, [python, "-c", readme_example()], env),
            ("`jaxem demo`", 5, jaxem_cli + ["demo"], env),
            ("`jaxem select data.csv -k 1-6`", 12, select_cli, env),
            ("the same, second run (disk cache)", 12, None, cached),
        ]
        for name, target, argv, case_env in cases:
            if argv is None:  # run the CLI twice with the cache: the second run is timed
                argv = select_cli
                timed(argv, case_env, tmp)
            seconds, _ = timed(argv, case_env, tmp)
            rows.append((name, seconds, target))
        _, out = timed([python, "-c", FIT_AFTER_INIT], env, tmp)
        fit = float(out.split("FIT")[-1])
        rows.append(("first `fit` after `init` (in-process)", fit, 1.5))
    table = ["| what (fresh process, float32) | seconds | target |", "|---|---|---|"]
    table += [f"| {name} | {s:.1f} | < {t} |" for name, s, t in rows]
    text = "\n".join(table)
    print(text)
    if args.markdown_section:
        doc = args.markdown_section.read_text()
        section = "## Time to first result\n\n" + text + "\n"
        if "## Time to first result" in doc:
            doc = re.sub(r"## Time to first result\n.*?(?=\n## |\Z)", section, doc, flags=re.S)
        else:
            doc = doc.rstrip("\n") + "\n\n" + section
        args.markdown_section.write_text(doc)


if __name__ == "__main__":
    main()
