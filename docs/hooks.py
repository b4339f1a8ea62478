"""MkDocs hooks: repository files the pages link to become part of the site, and CLI references are generated.

- A link from a page to a file of the repository outside docs/ (weights/README.md, benchmarks/results/...) works on
  GitHub as written; here the file is mounted into the site at its repository path and the link rewritten to it, so
  `mkdocs build --strict` checks it like any other link.
- `<!-- cli: count -->` is replaced by `bccd-yolo count --help`, straight from the parser, so the options a page lists
  are the options the command has.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LINK = re.compile(r"(\]\()([^)#\s]+)(#[^)\s]*)?(\))")


def _outside_targets(page_path: Path, text: str) -> list[tuple[str, Path]]:
    out = []
    for m in LINK.finditer(text):
        target = m.group(2)
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (page_path.parent / target).resolve()
        if DOCS not in resolved.parents and resolved != DOCS and ROOT in resolved.parents:
            out.append((target, resolved))
    return out


def _repo_targets(md: Path) -> list[tuple[str, Path]]:
    """Links of a mounted repository file to other repository files (outside docs/)."""
    out = []
    for m in LINK.finditer(md.read_text()):
        if "://" in m.group(2):
            continue
        resolved = (md.parent / m.group(2)).resolve()
        if ROOT in resolved.parents and DOCS not in resolved.parents and resolved.is_file():
            out.append((m.group(2), resolved))
    return out


def on_files(files, config):
    """Mount every repository file a page links to (outside docs/) at its repository path."""
    wanted: set[Path] = {ROOT / "weights" / "MODEL_CARD.md", ROOT / "weights" / "README.md"}
    queue = [*DOCS.rglob("*.md"), *wanted]
    seen: set[Path] = set()
    while queue:  # mounted Markdown files link on to others: mount those too
        md = queue.pop()
        if md in seen or not md.is_file():
            continue
        seen.add(md)
        for _, target in _outside_targets(md, md.read_text()) if DOCS in md.parents else _repo_targets(md):
            if target not in wanted:
                wanted.add(target)
                if target.suffix == ".md":
                    queue.append(target)
    for path in sorted(wanted):
        if path.is_file():
            rel = path.relative_to(ROOT).as_posix()
            files.append(File.generated(config, rel, abs_src_path=str(path)))
    return files


def _cli_help(command: str) -> str:
    from bccd_yolo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


def on_page_markdown(markdown, page, config, files):
    src = Path(page.file.abs_src_path) if page.file.abs_src_path else None
    if src is not None and DOCS in src.parents:
        here = Path(page.file.src_uri).parent

        def relink(m: re.Match) -> str:
            target = m.group(2)
            resolved = (src.parent / target).resolve() if "://" not in target else None
            if resolved is None or DOCS in resolved.parents or ROOT not in resolved.parents:
                return m.group(0)
            rel = Path(resolved.relative_to(ROOT))
            new = Path(*([".."] * len(here.parts)), rel).as_posix() if here.parts else rel.as_posix()
            return f"{m.group(1)}{new}{m.group(3) or ''}{m.group(4)}"

        markdown = LINK.sub(relink, markdown)
    elif src is not None and ROOT in src.parents:  # a mounted repository file linking into docs/
        here = Path(page.file.src_uri).parent

        def into_docs(m: re.Match) -> str:
            target = m.group(2)
            resolved = (src.parent / target).resolve() if "://" not in target else None
            if resolved is None or DOCS not in resolved.parents:
                return m.group(0)
            rel = resolved.relative_to(DOCS)
            new = Path(*([".."] * len(here.parts)), rel).as_posix()
            return f"{m.group(1)}{new}{m.group(3) or ''}{m.group(4)}"

        markdown = LINK.sub(into_docs, markdown)
    return re.sub(r"<!-- cli: ([a-z-]+) -->",
                  lambda m: f"```text\n$ bccd-yolo {m.group(1)} --help\n{_cli_help(m.group(1))}```", markdown)
