"""Print one of the README's two commands: `main` (the benchmark report) or `tests` (what CI runs)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

HEADINGS = {"main": "Run the main job", "tests": "Run the tests"}


def command(which: str) -> str:
    """The first ```bash block after the README paragraph that starts with the heading of ``which``."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    start = text.index(HEADINGS[which])
    block = re.search(r"```bash\n(.+?)\n```", text[start:], re.S)
    if block is None:
        msg = f"no ```bash block after {HEADINGS[which]!r} in README.md"
        raise SystemExit(msg)
    return block.group(1).strip()


if __name__ == "__main__":
    print(command(sys.argv[1] if len(sys.argv) > 1 else "tests"))
