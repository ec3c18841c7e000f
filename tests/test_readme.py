"""The README is what a newcomer trusts: its configuration reference must be the code's."""
from pathlib import Path

from gateway.config import reference_markdown, reference_rows

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_configuration_table_is_the_codes():
    table = reference_markdown()
    assert table in README, "README's configuration table is stale: paste `python -m gateway.config`"


def test_every_key_is_documented_with_a_meaning_or_is_self_evident():
    keys = [row[0] for row in reference_rows()]
    assert len(keys) == len(set(keys)) and len(keys) > 60
    for key in keys:
        assert f"`{key}`" in README


def test_readme_names_the_two_commands():
    assert "scripts/run" in README and "scripts/test" in README
