"""The package as a newcomer gets it: installed from a path with extras or from a git URL at a release
tag into a project of their own, the README's ten lines recorded against the loopback server and then
replayed with the server gone and no key. The wheel and sdist themselves are built, checked with
``twine check`` and installed by ``.ci/run``; the fast tests here keep the metadata honest."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from llm_server import LLMServer

from pytest_promptcache import __version__

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_changelog_has_a_section_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\d+\.\d+\.\d+)", changelog, re.MULTILINE)
    assert headings[0] == __version__, "the newest CHANGELOG section must be the version being built"


def test_the_build_backend_can_write_the_license_as_declared() -> None:
    # `license = "MIT"` is an SPDX expression (PEP 639): setuptools before 77 refuses it.
    assert PYPROJECT["project"]["license"] == "MIT"
    (requirement,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = tuple(int(part) for part in requirement.split(">=")[1].split("."))
    assert minimum >= (77,)
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_the_sdist_carries_the_whole_test_suite_and_the_demo() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    for line in ("graft tests", "graft examples", "graft cassettes", "include CHANGELOG.md"):
        assert line in manifest


# -- a new project, installed as the README says --------------------------------------------------------


def readme_block(start: str) -> str:
    """The README's fenced block whose first line is ``start``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```\w*\n(" + re.escape(start) + r".*?)```", text, re.DOTALL)
    assert match is not None, f"README.md has no block starting {start!r}"
    return match[1]


def run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done


def release_repository(target: Path) -> Path:
    """This checkout's files (committed or not, minus the ignored) as a git repository tagged with this
    version, as a user would clone it: what the README's git URL installs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "commit.gpgsign=false"]
    for argv in (
        ["init", "-q"],
        ["add", "-A"],
        ["commit", "-q", "-m", "release"],
        ["tag", f"v{__version__}"],
    ):
        subprocess.run([*git, *argv], cwd=target, check=True, capture_output=True, timeout=120)
    return target


@pytest.mark.slow
def test_a_new_project_installs_the_plugin_records_and_replays_as_the_readme_says(
    tmp_path: Path, llm_server: LLMServer
) -> None:
    source = release_repository(tmp_path / "pytest-promptcache")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, bindir = venv / "bin" / "python", venv / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTCACHE_", "PYTEST_", "OPENAI_"))}
    env |= {"PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}

    # From a path, with an extra (README, Install), and the SDK the app uses.
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    installed = run([*install, f"{source}[httpx2]", "openai"], tmp_path, env)
    assert installed.returncode == 0, installed.stderr
    version = run([str(bindir / "promptcache"), "--version"], tmp_path, env)
    assert version.stdout.strip() == f"promptcache {__version__}"

    project = tmp_path / "my-app"
    project.mkdir()
    (project / "test_app.py").write_text(readme_block("# test_app.py"), encoding="utf-8")
    (project / "pyproject.toml").write_text(readme_block("# pyproject.toml"), encoding="utf-8")
    pytest_cmd = [str(bindir / "pytest"), "-p", "no:cacheprovider"]

    # Once, against "the API" (the loopback server stands in for it), with a key.
    base_url = f"{llm_server.url}/v1"
    live = env | {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-test-" + "k" * 40}
    recorded = run([*pytest_cmd, "--promptcache=record"], project, live)
    assert recorded.returncode == 0, recorded.stdout
    assert "mode record: 1 LLM call: 1 live (1 recorded)" in recorded.stdout
    assert "no pytest configuration file" not in recorded.stdout
    assert len(list((project / "cassettes").glob("*.json"))) == 1

    # From then on: replayed, offline, no key.
    llm_server.stop()
    offline = env | {"OPENAI_BASE_URL": base_url}
    replayed = run(pytest_cmd, project, offline)
    assert replayed.returncode == 0, replayed.stdout
    assert "mode replay: 1 LLM call: 1 replayed" in replayed.stdout

    # From the git repository at the release tag (README, Install): the same plugin, the same result.
    # A host in the URL: the pip a fresh venv comes with (23.2) refuses git+file:/// without one.
    url = f"pytest-promptcache @ git+file://localhost{source}@v{__version__}"
    from_git = run([*install, "--no-deps", "--force-reinstall", url], tmp_path, env)
    assert from_git.returncode == 0, from_git.stderr
    listed = run([str(python), "-m", "pip", "show", "-f", "pytest-promptcache"], tmp_path, env)
    assert f"Version: {__version__}" in listed.stdout
    assert "Editable project location" not in listed.stdout
    again = run(pytest_cmd, project, offline)
    assert again.returncode == 0, again.stdout
    assert "mode replay: 1 LLM call: 1 replayed" in again.stdout

    # The oldest pytest the package accepts works too (its typed ini options are what set the bound).
    (oldest,) = [r.split(">=")[1] for r in PYPROJECT["project"]["dependencies"] if r.startswith("pytest>=")]
    downgraded = run([*install, f"pytest=={oldest}.*"], tmp_path, env)
    assert downgraded.returncode == 0, downgraded.stderr
    on_oldest = run(pytest_cmd, project, offline)
    assert on_oldest.returncode == 0, on_oldest.stdout
    assert f"pytest-{oldest}." in on_oldest.stdout
    assert "mode replay: 1 LLM call: 1 replayed" in on_oldest.stdout
