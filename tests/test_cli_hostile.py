"""The promptcache command on a directory someone else filled: a FIFO, a link to /dev/zero, a link out
of the directory, a file nested too deeply. Each is listed as unusable and the command exits 1, in
bounded time, with no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
FIFO = "a" * 64 + ".json"
ZERO = "b" * 64 + ".json"
OUTSIDE = "c" * 64 + ".json"
DEEP = "d" * 64 + ".json"


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    directory = tmp_path / "cassettes"
    shutil.copytree(CASSETTES, directory)
    os.mkfifo(directory / FIFO)
    (directory / ZERO).symlink_to("/dev/zero")
    secret = tmp_path / "elsewhere.json"
    secret.write_text("{}")
    (directory / OUTSIDE).symlink_to(secret)
    (directory / DEEP).write_text("[" * 100_000 + "]" * 100_000)
    return directory


def promptcache(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_promptcache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [["verify"], ["ls"], ["stats"], ["ls", "--json"]])
def test_hostile_files_are_listed_as_unusable_and_exit_1(hostile: Path, command: list[str]) -> None:
    result = promptcache("--dir", str(hostile), *command)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    for name in (FIFO, ZERO, OUTSIDE, DEEP):
        assert name in output, (name, output)
    assert "FIFO" in output


def test_verify_names_why_each_file_is_unusable(hostile: Path) -> None:
    out = promptcache("--dir", str(hostile), "verify").stdout
    lines = {line.split(":", 1)[0].rsplit("/", 1)[-1]: line for line in out.splitlines() if ".json" in line}
    assert "FIFO" in lines[FIFO]
    assert "link to /dev/zero" in lines[ZERO]
    assert "outside" in lines[OUTSIDE]
    assert "deep" in lines[DEEP] or "nest" in lines[DEEP] or "depth" in lines[DEEP]
