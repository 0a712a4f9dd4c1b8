"""The docs test's block reader: markers are recognised, and a mistyped one fails instead of being ignored."""

from __future__ import annotations

import pytest
from docs_snippets import blocks


def test_blocks_carry_their_marker_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n<!-- docs: needs torch pip install torch -->\n```python\nimport torch\n```\n```bash\nls\n```\n"
    )
    needs, shell = blocks(page, "page.md")
    assert (needs.line, needs.language, needs.action, needs.argument) == (
        3,
        "python",
        "needs",
        "torch pip install torch",
    )
    assert needs.text == "import torch\n"
    assert (shell.language, shell.action) == ("bash", None)


@pytest.mark.parametrize("marker", ["<!-- docs: skipp x -->", "<!-- docs: skip -->", "<!-- docs skip x -->"])
def test_a_mistyped_or_incomplete_marker_fails(tmp_path, marker):
    page = tmp_path / "page.md"
    page.write_text(f"{marker}\n```python\npass\n```\n")
    with pytest.raises(AssertionError, match="page.md:1"):
        blocks(page, "page.md")
