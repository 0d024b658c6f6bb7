"""The documentation holds together: every relative link in README.md and docs/*.md reaches a file,
every #anchor a heading of its file, and the README names every Procfile mode. No server."""

import re

import pytest

from lab import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
CODE_SPAN = re.compile(r"(`+).*?\1")
# [text](target) and ![alt](target), with an optional "title"; the text may hold one level of [...].
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
PROCESS = re.compile(r"^([A-Za-z0-9_-]+):", re.MULTILINE)


def prose_lines(text):
    """The lines outside fenced code blocks, where a link or a heading is one."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading):
    """GitHub's anchor for a heading: markup dropped, lowercase, every punctuation mark but
    hyphens and underscores removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page):
    """Every heading's anchor in a page, repeated headings suffixed -1, -2 as GitHub does."""
    seen = {}
    found = set()
    for line in prose_lines(page.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page):
    """The targets of every inline link, image and reference definition in a page."""
    for line in prose_lines(page.read_text()):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            yield definition.group(1)
            continue
        yield from INLINE_LINK.findall(CODE_SPAN.sub("", line))


def shown(path):
    """A path as the repository names it, or whole when it lies outside."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken_links(page):
    """What is wrong with each relative link of a page: a missing file or an unknown anchor."""
    problems = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http(s), mailto: not followed
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            problems.append(f"{target}: no file {shown(destination)}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading #{anchor} in {shown(destination)}")
        elif anchor and destination.suffix != ".md":
            problems.append(f"{target}: an anchor into a file that is not Markdown")
    return problems


def test_the_pages_exist():
    names = {page.name for page in PAGES if page.parent.name == "docs"}
    assert {"endpoints.md", "locust.md", "uneven-waves.md", "todays-answers.md", "ceiling.md",
            "workers.md", "10k-users.md", "benchmark.md", "failure-modes.md", "settings.md",
            "design.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=shown)
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "there.md").write_text("# A heading, with `code`\n\n## Again\n\n## Again\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[fine](there.md#a-heading-with-code) [fine](there.md#again-1) [fine](#own) ![fine](there.md)\n"
        "[gone](missing.md) [bad anchor](there.md#nowhere) [bad own](#elsewhere) ![gone](x.png)\n"
        "`[in code](ignored.md)` [web](https://example.com/nowhere)\n"
        "```\n[in a block](ignored.md)\n```\n"
        "# Own\n")
    problems = [problem.split(":")[0] for problem in broken_links(page)]
    assert problems == ["missing.md", "there.md#nowhere", "#elsewhere", "x.png"]


def test_readme_names_every_procfile_mode():
    readme = (ROOT / "README.md").read_text()
    for procfile in ("Procfile", "Procfile.locust"):
        names = PROCESS.findall((ROOT / procfile).read_text())
        assert names, f"no process in {procfile}"
        missing = [name for name in names if f"`{name}`" not in readme]
        assert missing == [], f"{procfile}'s processes not in README.md: {missing}"


def test_slug_follows_github():
    assert slug("Why `pgserver`") == "why-pgserver"
    assert slug("10,000 users: past one process on both sides") == "10000-users-past-one-process-on-both-sides"
    assert slug("Today's answers: threads and psycopg 3") == "todays-answers-threads-and-psycopg-3"
    assert slug("The gevent mode's `--timeout 0`") == "the-gevent-modes---timeout-0"
