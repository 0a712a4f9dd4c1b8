"""The fenced code blocks of a Markdown page, and what the docs test does with each.

A block's treatment comes from its language and from an optional marker, an HTML comment on the line
right before its opening fence (invisible when the page is rendered):

- ```` ```python ````: run, in order, in one namespace per page (so a page reads like a notebook).
  Every Python block runs unless marked.
- ``<!-- docs: needs NAME[,NAME] what to install -->``: run when the NAMEs are modules that import;
  otherwise only its import statements of other modules run (so its names still exist), and the
  test says what is missing. A NAME that is no module (``kafka-broker``) is never met here.
- ``<!-- docs: skip REASON -->``: not run (a fragment of another deployment's configuration, a
  long-running command); the reason is required.
- ``<!-- docs: excerpt PATH -->``: the block is part of the file at PATH (project root), whitespace
  aside; that file is run by the tests that use it.
- ``<!-- docs: file PATH -->``: the block is written to PATH in the page's working directory.
- ``<!-- docs: run -->`` on a ```` ```bash ```` block: run with bash (``set -e``) in the page's
  working directory; other shell blocks are shown, not run.
- ``<!-- docs: output -->`` on a plain block: the standard output of the Python block before it,
  compared as doctest does with ELLIPSIS and NORMALIZE_WHITESPACE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

MARKER = re.compile(r"^<!--\s*docs:\s*(\w+)\s*(.*?)\s*-->$")
ACTIONS = {"needs", "skip", "excerpt", "file", "run", "output"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    action: Optional[str]
    argument: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path, name: str) -> List[Block]:
    """Every fenced block of the page at ``path`` (shown as ``name``); a malformed marker raises."""
    found: List[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("```"):
            i += 1
            continue
        language = line[3:].strip()
        start = i
        i += 1
        body: List[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{name}:{start + 1}: a code block is never closed")
        action, argument = None, ""
        before = lines[start - 1].strip() if start else ""
        if before.startswith("<!--"):
            marker = MARKER.match(before)
            if marker is None or marker.group(1) not in ACTIONS:
                raise AssertionError(f"{name}:{start}: unknown docs marker {before!r} (one of {sorted(ACTIONS)})")
            action, argument = marker.group(1), marker.group(2)
            if action in {"needs", "skip", "excerpt", "file"} and not argument:
                raise AssertionError(f"{name}:{start}: marker '{action}' needs an argument")
        found.append(Block(name, start + 1, language, action, argument, "\n".join(body) + "\n"))
        i += 1
    return found
