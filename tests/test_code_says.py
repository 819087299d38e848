"""What the code says about itself: comments give reasons, not measurements; sources are named."""
import io
import re
import tokenize
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "chainrule"
MEASUREMENT = re.compile(r"\b\d+(\.\d+)?\s*(ms|µs|us|ns)\b|\b\d+(\.\d+)?x (faster|slower)\b|"
                         r"\btimes (faster|slower|as long)\b|\b\d+(-\d+)?% (faster|slower)\b")
UNNAMED_SOURCE = re.compile(r"source book|seed article|source texts|the seed.s", re.IGNORECASE)


def prose(path: Path):
    """(line, text) of every comment and docstring-like string of a module."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    previous = None
    for token in tokens:
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
        elif token.type == tokenize.STRING and (previous is None or previous.type in (
                tokenize.INDENT, tokenize.NEWLINE, tokenize.NL, tokenize.DEDENT)):
            yield token.start[0], token.string
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token


def test_the_scanner_finds_comments_and_docstrings(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""Doc: 3 ms."""\nx = "2 ms"  # took 5 µs\n')
    found = [text for _, text in prose(module) if MEASUREMENT.search(text)]
    assert found == ['"""Doc: 3 ms."""', "# took 5 µs"]


def test_comments_carry_no_measurements():
    # the numbers that decided a choice live in BENCHMARKS.md ("Measurements behind the code's choices")
    found = [f"{path.relative_to(SRC)}:{line}: {text.strip()[:100]}" for path in sorted(SRC.rglob("*.py"))
             for line, text in prose(path) if MEASUREMENT.search(text)]
    assert not found, "\n".join(found)


def test_sources_are_named():
    found = [f"{path.relative_to(SRC)}:{line}: {text.strip()[:100]}" for path in sorted(SRC.rglob("*.py"))
             for line, text in prose(path) if UNNAMED_SOURCE.search(text)]
    assert not found, "\n".join(found)
