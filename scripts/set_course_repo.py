"""Write your copy's git URL into every notebook's install cell, once for the whole course (Colab).

On Colab each chapter is its own runtime, and its first cell clones the course from the URL in
its `COURSE_REPO` line. After forking the course, run once (or `make colab REPO=...`):

    python scripts/set_course_repo.py https://github.com/you/audiocls

then commit and push: every chapter and solutions notebook opened on Colab from your copy
installs it with no edit. `AUDIOCLS_REPO`, when set, still wins over the written URL.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LINE = re.compile(r'^COURSE_REPO = os\.environ\.get\("AUDIOCLS_REPO", "[^"]*"\)', re.M)


def set_course_repo(url: str, folder: Path = NOTEBOOKS) -> list[Path]:
    """Write `url` as the default of every notebook's COURSE_REPO line; return the notebooks changed."""
    if not re.match(r"^(https://|git@|file://|/)\S+$", url) or '"' in url:
        raise SystemExit(f"{url!r} is not a git URL: give one like https://github.com/you/audiocls")
    changed = []
    for path in sorted(folder.rglob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        cells = [cell for cell in notebook.cells if cell.cell_type == "code" and LINE.search(cell.source)]
        if not cells:
            continue
        for cell in cells:
            cell.source = LINE.sub(f'COURSE_REPO = os.environ.get("AUDIOCLS_REPO", "{url}")', cell.source)
        nbformat.write(notebook, path)
        changed.append(path)
    return changed


def main() -> int:
    """Write the URL into the notebooks and say how many changed."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="your copy's git URL, e.g. https://github.com/you/audiocls")
    args = parser.parse_args()
    changed = set_course_repo(args.url)
    print(f"{len(changed)} notebooks now install the course from {args.url}: commit and push them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
