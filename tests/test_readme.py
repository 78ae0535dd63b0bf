"""The README's generated sections match the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from glsverify.onnx.ops import supported_ops_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_supported_ops_table_is_generated_from_the_registry():
    text = README.read_text()
    block = re.search(r"<!-- supported-ops:start -->\n(.*?)<!-- supported-ops:end -->", text, re.S)
    assert block, "README lacks the supported-ops block"
    assert block.group(1) == supported_ops_markdown()


def test_quick_start_has_exactly_two_commands():
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]
