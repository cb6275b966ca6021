"""The fenced code blocks of README.md and docs/*.md, and what the doc test does with each.

A block is *runnable* (```sql, ```python, ```bash, ```sh), *data* (```json, ```yaml: they must
parse), or *output* (no language: plans, errors, formats). A runnable block that is not meant
to run says so in an HTML comment on the line before its fence, ``<!-- not run: reason -->``;
any other block of another language must carry that marker too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = frozenset({"sql", "python", "bash", "sh"})
DATA = frozenset({"json", "yaml"})
OUTPUT = frozenset({""})

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*not run:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is (``doc`` relative to the repository, 1-based ``line`` of
    its first content line), its language, its text and, if marked, why it is not run."""

    doc: str
    line: int
    lang: str
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def documents() -> list[Path]:
    """README.md and every page in docs/, in reading order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def extract(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = path.relative_to(ROOT).as_posix()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, fence, lang = opened.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        ]
        blocks.append(Block(doc, i + 2, lang.lower(), "\n".join(body) + "\n", _marker(lines, i)))
        i = end + 1
    return blocks


def _marker(lines: list[str], fence: int) -> str | None:
    """The reason of a ``<!-- not run: ... -->`` on the nearest non-blank line above a fence."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    found = _MARKER.match(lines[j]) if j >= 0 else None
    return found.group(1) if found else None


def all_blocks() -> list[Block]:
    return [b for path in documents() for b in extract(path)]


def to_run(doc: str) -> list[Block]:
    """The blocks of ``doc`` the doc test runs: runnable and not marked."""
    return [b for b in extract(ROOT / doc) if b.lang in RUNNABLE and b.not_run is None]
