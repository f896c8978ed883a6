"""The README's tour runs as written and prints what it says.

Blocks run in the order they appear, from the tour's heading on, in one working
directory:

- ``python`` blocks run in one namespace. A ``print(...)`` line expects the comment at its
  end, or on the line after it when that line is only a comment; prints without one must
  produce the ``text`` block right after their code block.
- ``sh`` blocks run line by line: ``creditmeter …`` through the command line (exit status
  0), ``VAR=value creditmeter serve …`` as a server on a free port (the port the README
  shows is replaced by it in the blocks that follow, answers included), ``curl …`` as the
  HTTP request it makes; a ``text`` block right after a ``curl`` is what it answers.

``…`` in an expected line matches any text.
"""

from __future__ import annotations

import inspect
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner

from creditmeter.cli.main import main
from tests.client.conftest import Server, start_server

README = Path(__file__).parents[2] / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
TOUR = "## A five-minute tour"
SHOWN_ADDRESS = "127.0.0.1:8000"


def blocks() -> list[tuple[str, str, int]]:
    """``(language, code, first line number)`` of each fenced block of the tour."""
    text = README.read_text(encoding="utf-8")
    start = text.index(TOUR)
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start(2)) + 1)
        for m in BLOCK.finditer(text, start)
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
    """``expected`` with each ``…`` standing for any text."""
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual, re.DOTALL) is not None


def test_matches_takes_an_ellipsis_for_any_text() -> None:
    assert matches("allocation 3000 from …", "allocation …")
    assert matches('{"a":1,"b":{"c":2},"d":3}', '{"a":1,"b":{…},"d":3}')
    assert not matches('{"a":2}', '{"a":1…')
    assert matches("exact", "exact")
    assert not matches("exact.", "exact")


class Tour:
    """The state the blocks share: the Python namespace, the server, its address."""

    def __init__(self, tmp_path: Path) -> None:
        self.namespace: dict[str, Any] = {}
        self.server: Server | None = None
        self.address = SHOWN_ADDRESS
        self.log = tmp_path / "serve.log"
        self.answered: str | None = None

    def localize(self, code: str) -> str:
        return code.replace(SHOWN_ADDRESS, self.address)

    def python(self, code: str, first: int, following: tuple[str, str, int] | None) -> None:
        printed: list[tuple[int, str]] = []

        def record(*values: object) -> None:
            frame = inspect.currentframe()
            assert frame is not None
            assert frame.f_back is not None
            printed.append((frame.f_back.f_lineno, " ".join(str(v) for v in values)))

        self.namespace["print"] = record
        source = "\n" * (first - 1) + self.localize(code)
        exec(compile(source, str(README), "exec"), self.namespace)
        expected = expected_by_line(code, first)
        for line, text in printed:
            if line in expected:
                assert matches(text, expected[line]), f"README.md:{line}: printed {text!r}"
        rest = [text for line, text in printed if line not in expected]
        if following is not None and following[0] == "text" and rest:
            wanted = following[1].splitlines()
            assert len(rest) == len(wanted), rest
            for text, want in zip(rest, wanted, strict=True):
                assert matches(text.rstrip(), want.rstrip()), f"printed {text!r}"
        else:
            assert rest == [], f"prints without an expected output: {rest}"

    def shell(self, code: str, first: int) -> None:
        for number, line in enumerate(code.splitlines(), start=first):
            words = shlex.split(line)
            where = f"README.md:{number}"
            leading = 0
            while re.match(r"[A-Z_][A-Z0-9_]*=", words[leading]):
                leading += 1
            environment = dict(w.split("=", 1) for w in words[:leading])
            command = words[leading:]
            if command[:2] == ["creditmeter", "serve"]:
                self.serve(command[2:], environment)
            elif command[0] == "creditmeter":
                result = CliRunner().invoke(main, command[1:], catch_exceptions=False)
                assert result.exit_code == 0, f"{where}: {result.output}"
            elif command[0] == "curl":
                self.answered = self.curl(shlex.split(self.localize(line))[1:], where)
            else:
                pytest.fail(f"{where}: the test does not know how to run {line!r}")

    def serve(self, args: list[str], environment: dict[str, str]) -> None:
        assert self.server is None, "one server at a time"
        url_option = args.index("--database-url")
        database_url = args[url_option + 1]
        rest = args[:url_option] + args[url_option + 2 :]
        admin_key = environment.pop("CREDITMETER_ADMIN_KEY")
        assert environment == {}, environment
        self.server = start_server(database_url, self.log, *rest, admin_key=admin_key)
        self.address = self.server.url.removeprefix("http://")

    def curl(self, words: list[str], where: str) -> str:
        method, headers, data, url = "GET", {}, None, None
        arguments = iter(words)
        for word in arguments:
            if word == "-s":
                continue
            if word == "-X":
                method = next(arguments)
            elif word == "-H":
                name, _, value = next(arguments).partition(": ")
                headers[name] = value
            elif word == "-d":
                data = next(arguments)
                method = "POST" if method == "GET" else method
            elif word.startswith("http"):
                url = word
            else:
                pytest.fail(f"{where}: the test does not know curl's {word!r}")
        assert url is not None, where
        response = httpx2.request(method, url, headers=headers, content=data)
        assert response.status_code < 400, f"{where}: {response.status_code} {response.text}"
        return response.text

    def text(self, code: str) -> None:
        if self.answered is not None:
            assert matches(self.answered.strip(), self.localize(code).strip()), self.answered
            self.answered = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def run_blocks(tour: Tour, found: list[tuple[str, str, int]]) -> Iterator[str]:
    for index, (language, code, first) in enumerate(found):
        following = found[index + 1] if index + 1 < len(found) else None
        if language == "python":
            tour.python(code, first, following)
        elif language == "sh":
            tour.shell(code, first)
        elif language == "text":
            tour.text(code)
        yield language


def test_the_tour_runs_and_prints_what_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CREDITMETER_DATABASE_URL", raising=False)
    tour = Tour(tmp_path)
    try:
        languages = list(run_blocks(tour, blocks()))
    finally:
        tour.stop()
    assert languages.count("python") >= 9
    assert languages.count("sh") >= 3
    assert tour.server is not None, "the tour serves over HTTP"
