"""No source module grows past what one reader can hold: large modules become packages."""

from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "arsync"
MAX_LINES = 600


def test_no_source_module_is_over_600_lines() -> None:
    sizes = {
        str(path.relative_to(SRC)): len(path.read_text().splitlines())
        for path in SRC.rglob("*.py")
        if "migrations" not in path.parts
    }
    assert len(sizes) > 50  # the walk found the package
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert too_long == {}
