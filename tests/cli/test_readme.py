"""The README's tour runs as written and prints what its comments say.

A ``print(...)`` line expects the comment at its end, or on the line after it when that
line is only a comment; prints without one must produce the ``text`` block right after
their code block (``…`` at the end of a line matches any ending).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).parents[2] / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, str, int]]:
    """``(language, code, first line number)`` of each fenced block."""
    text = README.read_text(encoding="utf-8")
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start(2)) + 1) for m in BLOCK.finditer(text)
    ]


def expected_by_line(code: str, first: int) -> dict[int, str]:
    lines = code.splitlines()
    expected = {}
    for i, line in enumerate(lines):
        if "print(" not in line:
            continue
        comment = line.partition(")  # ")[2]
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if comment:
            expected[first + i] = comment
        elif following.startswith("# "):
            expected[first + i] = following[2:]
    return expected


def matches(actual: str, expected: str) -> bool:
    if expected.endswith("…"):
        return actual.startswith(expected[:-1])
    return actual == expected


def test_the_tour_prints_what_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    found = blocks()
    namespace: dict[str, Any] = {}
    python_blocks = 0
    for index, (language, code, first) in enumerate(found):
        if language != "python":
            continue
        python_blocks += 1
        printed: list[tuple[int, str]] = []

        def record(*values: object, _printed: list[tuple[int, str]] = printed) -> None:
            frame = inspect.currentframe()
            assert frame is not None
            assert frame.f_back is not None
            _printed.append((frame.f_back.f_lineno, " ".join(str(v) for v in values)))

        namespace["print"] = record
        exec(compile("\n" * (first - 1) + code, str(README), "exec"), namespace)
        expected = expected_by_line(code, first)
        for line, text in printed:
            if line in expected:
                assert matches(text, expected[line]), f"README.md:{line}: printed {text!r}"
        rest = [text for line, text in printed if line not in expected]
        following = found[index + 1] if index + 1 < len(found) else None
        if following is not None and following[0] == "text" and rest:
            wanted = following[1].splitlines()
            assert len(rest) == len(wanted), rest
            for text, want in zip(rest, wanted, strict=True):
                assert matches(text.rstrip(), want.rstrip()), f"printed {text!r}"
        else:
            assert rest == [], f"prints without an expected output: {rest}"
    assert python_blocks >= 8
