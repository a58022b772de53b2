"""Hostile files, faults and bounded waits: nothing in the cassette or state directory, no unwritable
report path and no stuck process hangs a run, exhausts its memory or ends it with a traceback.

Runs that could hang or eat memory on a regression are pytester subprocesses with a timeout (and, where
memory is at stake, an address-space limit), so a failure here is a failed test, never a stuck suite.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLIENTS_CONFTEST, Suite

from pytest_promptcache.store.files import CorruptRecording, read_recording

# Long enough for a heavily loaded machine to start pytest and the SDKs (a few seconds when idle); what
# takes longer is a hang, cut off here.
TIMEOUT = 180.0

TWO_TESTS = """
from conftest import ask

def test_one(oai0):
    ask(oai0, "first")

def test_two(oai0):
    ask(oai0, "second")
"""

# A process that reads a hostile file to the end runs out of address space in seconds instead of
# taking the machine's memory (and its neighbours') with it.
LIMIT_MEMORY = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
"""


def bounded(suite: Suite, *args: str, timeout: float = TIMEOUT) -> pytest.RunResult:
    """A pytester run in a subprocess that is killed (and fails the test) if it outlives ``timeout``."""
    return suite.pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)


def recorded_path(suite: Suite, test: str) -> Path:
    """The recording file the test named ``test`` made."""
    key = next(k for k, d in suite.recordings().items() if d["meta"]["test"].endswith(f"::{test}"))
    return suite.cassettes / f"{key}.json"


def record_two(suite: Suite) -> tuple[Path, Path]:
    suite.pytester.makepyfile(TWO_TESTS)
    suite.run("--promptcache=record").assert_outcomes(passed=2)
    return recorded_path(suite, "test_one"), recorded_path(suite, "test_two")


def unusable_lines(path: Path, reason: str) -> list[str]:
    return [
        "*_ test_one _*",
        f"promptcache: recording {path} is unusable: {reason}",
        "It was left untouched: fix it by hand, or delete it and record again*",
    ]


# -- hostile recording files -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["replay", "record"])
@pytest.mark.slow
def test_a_fifo_named_like_a_recording_fails_its_test_instead_of_hanging(clients: Suite, mode: str) -> None:
    path, _ = record_two(clients)
    path.unlink()
    os.mkfifo(path)
    clients.server.stop()

    result = bounded(clients, f"--promptcache={mode}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(unusable_lines(path, "it is a FIFO, not a regular file*"))
    assert stat.S_ISFIFO(os.lstat(path).st_mode), "the file was replaced"


@pytest.mark.slow
def test_a_recording_linked_to_dev_zero_is_refused_without_reading_it(clients: Suite) -> None:
    path, _ = record_two(clients)
    # Only now: record_two runs in this process, which must not keep the limit (subprocesses of later
    # tests inherit it: Node cannot reserve its WebAssembly memory under 3 GiB of address space, nor can
    # chromium start).
    clients.pytester.makeconftest(CLIENTS_CONFTEST + LIMIT_MEMORY)
    path.unlink()
    path.symlink_to("/dev/zero")
    clients.server.stop()

    result = bounded(clients)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(unusable_lines(path, "it is a symbolic link to /dev/zero, outside *"))
    assert os.readlink(path) == "/dev/zero"


def test_a_recording_linked_out_of_its_directory_is_refused_and_one_linked_within_is_served(
    clients: Suite,
) -> None:
    one, two = record_two(clients)
    outside = clients.path / "elsewhere.json"
    one.rename(outside)
    one.symlink_to(outside)
    # Within the cassette directory a link is an ordinary way to lay files out; it is served.
    (clients.cassettes / "store").mkdir()
    two.rename(clients.cassettes / "store" / two.name)
    two.symlink_to(Path("store") / two.name)
    clients.server.stop()

    result = clients.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(unusable_lines(one, f"it is a symbolic link to {outside}, outside *"))


def test_a_deeply_nested_file_fails_its_test_by_name_and_never_breaks_another_tests_miss(
    clients: Suite,
) -> None:
    path, _ = record_two(clients)
    depth = 100_000
    path.write_text('{"schema_version": 2, "request": ' + "[" * depth + "]" * depth + "}")
    clients.pytester.makepyfile(
        test_new="from conftest import ask\n\ndef test_three(oai0):\n    ask(oai0, 'third')\n"
    )
    clients.server.stop()

    result = clients.run()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(unusable_lines(path, "it is nested too deeply to be a recording*"))
    # The miss of a test with no recording reads every file's request to find the nearest one.
    result.stdout.fnmatch_lines(["*_ test_three _*", "promptcache: no recording for this request*"])
    assert "RecursionError" not in result.stdout.str()


def test_a_recording_over_the_default_size_cap_is_refused_unread(clients: Suite) -> None:
    path, _ = record_two(clients)
    with path.open("r+b") as fh:
        fh.truncate(65 * 1024 * 1024)  # sparse: no disk is used, but a reader would get 65 MiB
    clients.server.stop()

    result = clients.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        unusable_lines(
            path,
            "it is 65.0 MiB, over the 64.0 MiB limit (promptcache_max_recording_size); raise the limit "
            "if it is a real recording*",
        )
    )


def test_the_size_cap_is_an_ini_option(clients: Suite) -> None:
    path, _ = record_two(clients)
    clients.server.stop()
    size = path.stat().st_size
    assert size > 1024
    clients.pytester.makeini("[pytest]\npromptcache_max_recording_size = 1KiB\n")

    result = clients.run("-k", "test_one")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(
        unusable_lines(path, f"it is {size / 1024:.1f} KiB, over the 1.0 KiB limit (promptcache_max_*")
    )


@pytest.mark.parametrize("value", ["lots", "12", "-3MiB", "5 parsecs"])
def test_a_bad_size_cap_is_a_usage_error(clients: Suite, value: str) -> None:
    clients.pytester.makeini(f"[pytest]\npromptcache_max_recording_size = {value}\n")
    clients.pytester.makepyfile("def test_nothing():\n    pass\n")
    result = clients.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-promptcache: promptcache_max_recording_size: *{value}*"])


KEY = "0" * 64


def test_read_recording_never_lets_a_recursion_error_out(tmp_path: Path) -> None:
    path = tmp_path / f"{KEY}.json"
    path.write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(CorruptRecording, match="nested too deeply"):
        read_recording(path)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/dev/null", "a symbolic link to /dev/null, outside"),
        ("missing.json", "a symbolic link to * which does not exist"),
        ("sub", "a directory, not a regular file"),
    ],
)
def test_read_recording_names_what_a_hostile_link_is(tmp_path: Path, target: str, reason: str) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / f"{KEY}.json"
    path.symlink_to(target)
    with pytest.raises(CorruptRecording) as info:
        read_recording(path)
    assert info.value.path == path
    assert fnmatch.fnmatchcase(info.value.reason, f"it is {reason}*"), info.value.reason


def test_read_recording_takes_a_size_cap(tmp_path: Path) -> None:
    path = tmp_path / f"{KEY}.json"
    path.write_text(" " * 5000 + "{}")
    with pytest.raises(CorruptRecording, match=r"it is 4\.9 KiB, over the 4\.0 KiB limit"):
        read_recording(path, max_size=4096)


# -- reports that cannot be written ----------------------------------------------------------------------


ONE_TEST = """
from conftest import ask

def test_one(oai0):
    ask(oai0, "one")
"""


@pytest.mark.parametrize(
    ("option", "what"),
    [
        ("--promptcache-report={dir}", "the JSON report"),
        ("--promptcache-report={file}/r.json", "the JSON report"),
        ("--promptcache-report-md={dir}", "the Markdown report"),
    ],
)
def test_an_unwritable_report_path_is_one_line_after_the_summary_and_fails_the_session(
    clients: Suite, option: str, what: str
) -> None:
    clients.pytester.makepyfile(ONE_TEST)
    (clients.path / "a-dir").mkdir()
    (clients.path / "a-file").write_text("")
    arg = option.format(dir=clients.path / "a-dir", file=clients.path / "a-file")
    result = clients.run("--promptcache=record", arg)
    result.stdout.fnmatch_lines(
        [
            "*promptcache*",
            f"promptcache: could not write {what} to {arg.split('=', 1)[1]}: *; give * a writable file path",
            "*1 passed*",
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("target", ["a-dir", "/dev/full"])
def test_an_unwritable_github_step_summary_is_one_line_and_fails_the_session(
    clients: Suite, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    clients.pytester.makepyfile(ONE_TEST)
    (clients.path / "a-dir").mkdir()
    summary = str(clients.path / target) if target == "a-dir" else target
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", summary)
    result = clients.run("--promptcache=record")
    result.stdout.fnmatch_lines(
        [
            f"promptcache: could not append the report to $GITHUB_STEP_SUMMARY ({summary}): *",
            "*1 passed*",
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_failed_test_keeps_its_exit_status_when_a_report_cannot_be_written(clients: Suite) -> None:
    clients.pytester.makepyfile(ONE_TEST + "\ndef test_fails():\n    assert False\n")
    (clients.path / "a-dir").mkdir()
    result = clients.run("--promptcache=record", f"--promptcache-report={clients.path / 'a-dir'}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["promptcache: could not write the JSON report to *"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


# -- bounded waits -----------------------------------------------------------------------------------------


def private_state(suite: Suite, **ini: str) -> Path:
    state = suite.path / "state"
    state.mkdir(mode=0o700)
    lines = "".join(f"{name} = {value}\n" for name, value in ini.items())
    suite.pytester.makeini(f"[pytest]\npromptcache_state_dir = state\n{lines}")
    return state


def test_a_waiter_on_a_stuck_leader_in_its_process_fails_with_the_key_and_pid(clients: Suite) -> None:
    private_state(clients, promptcache_flight_timeout="0.5")
    clients.pytester.makepyfile(
        """
        import threading
        import openai
        from conftest import ask

        def test_waits_for_a_stream_nobody_reads(oai0):
            first = ask(oai0, "held open", stream=True)  # leads: its body is unread, the flight open
            errors = []

            def call():
                try:
                    ask(oai0, "held open", stream=True)
                except openai.NotFoundError as exc:
                    errors.append(exc.message)

            waiter = threading.Thread(target=call, daemon=True)
            waiter.start()
            waiter.join(10)
            first.close()
            waiter.join(10)
            assert errors, "the waiter went live"
            assert "gave up waiting" in errors[0]
        """
    )
    # In-process: the suite's own joins bound it, and its waiter thread dies with it.
    result = clients.run("--promptcache=record")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "promptcache: gave up waiting for an identical call in flight after 0.5 s "
            "(promptcache_flight_timeout)*",
            "  key: * [0-9a-f]*",
            "  held by: *this process (pid [0-9]*)*",
        ]
    )
    assert "AssertionError" not in result.stdout.str()
    assert clients.server.count() == 1


@contextlib.contextmanager
def held_lock(path: Path) -> Iterator[None]:
    """The key lock a recording process holds, with its pid in it, as the plugin writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_waiter_on_a_lock_held_by_another_process_fails_naming_the_holder(clients: Suite) -> None:
    state = private_state(clients, promptcache_flight_timeout="0.5")
    clients.pytester.makepyfile(ONE_TEST)
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    (key,) = clients.recordings()
    (clients.cassettes / f"{key}.json").unlink()
    clients.server.reset()

    with held_lock(state / "locks" / f"{key}.lock"):
        result = bounded(clients, "--promptcache=record")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "promptcache: gave up waiting for an identical call in flight after 0.5 s*",
            f"  key: * {key}",
            f"  held by: *pid {os.getpid()}*",
        ]
    )
    assert clients.server.count() == 0, "the waiter went live"


@pytest.mark.slow
def test_pacing_that_would_wait_longer_than_its_cap_fails_the_call_unsent(clients: Suite) -> None:
    private_state(clients, promptcache_record_rpm="1", promptcache_record_max_wait="2")
    clients.pytester.makepyfile(
        """
        from conftest import ask

        def test_two_calls(oai0):
            ask(oai0, "first")
            ask(oai0, "second")  # one request a minute: this one would wait ~60 s
        """
    )
    result = bounded(clients, "--promptcache=record")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "promptcache: pacing would hold this call * s, longer than promptcache_record_max_wait (2 s)*",
        ]
    )
    assert clients.server.count() == 1
    assert len(clients.recordings()) == 1


@pytest.mark.slow
def test_a_planted_pacing_schedule_far_ahead_is_ignored_with_a_warning(clients: Suite) -> None:
    state = private_state(clients, promptcache_record_rpm="60")
    host = f"127.0.0.1:{clients.server.port}"
    pace = state / "pace" / f"{hashlib.sha256(host.encode()).hexdigest()[:16]}.json"
    pace.parent.mkdir(mode=0o700)
    pace.write_text(json.dumps({"host": host, "next_at": time.time() + 3600}))
    clients.pytester.makepyfile(ONE_TEST)

    result = bounded(clients, "--promptcache=record")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*promptcache: ignored *next_at* in *: *ahead*"])
    assert clients.server.count() == 1


# -- the state directory -------------------------------------------------------------------------------


def use_temp_dir(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """Where the default state directory goes, for in-process runs (tempfile caches its answer)."""
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)


def test_a_default_state_directory_writable_by_others_is_a_usage_error(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = clients.path / "tmp"
    planted = tmp / f"pytest-promptcache-{os.getuid()}"
    planted.mkdir(parents=True)
    planted.chmod(0o777)
    clients.pytester.makepyfile(ONE_TEST)
    use_temp_dir(monkeypatch, tmp)

    result = clients.run("--promptcache=record")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: pytest-promptcache: state directory {planted} is writable by others (mode 0777)*"]
    )
    assert clients.server.count() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory to another user")
def test_a_state_directory_owned_by_another_user_is_a_usage_error(clients: Suite) -> None:
    state = private_state(clients)
    os.chown(state, 4242, 4242)
    clients.pytester.makepyfile(ONE_TEST)

    result = clients.run("--promptcache=record")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: pytest-promptcache: state directory {state} belongs to uid 4242, not to you*"]
    )
    assert clients.server.count() == 0


def test_the_default_state_directory_is_created_private(
    clients: Suite, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = clients.path / "tmp"
    tmp.mkdir()
    clients.pytester.makepyfile(ONE_TEST)
    use_temp_dir(monkeypatch, tmp)
    clients.run("--promptcache=record").assert_outcomes(passed=1)
    created = tmp / f"pytest-promptcache-{os.getuid()}"
    assert stat.S_IMODE(created.stat().st_mode) == 0o700
    for below in created.iterdir():
        assert stat.S_IMODE(below.stat().st_mode) == 0o700
