"""The bubblewrap sandbox: layout, state between commands, and containment of hostile commands.

Every hostile command is bounded in time; each test checks that it was contained, that the host
was not touched, that the result says what happened, and that the next command still works.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from rewardlab.envs.sandbox import (
    BubblewrapSandbox,
    SandboxLimits,
    SandboxUnavailable,
    UnsandboxedLocal,
    make_sandbox,
)
from rewardlab.envs.sandbox.bwrap import find_bwrap

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"),
]

FILES = {"rl_environment/compute_reward.py": "def reward(t):\n    return -10\n", "notes.txt": "hello\n"}


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _assert_still_works(session) -> None:
    result = session.run("echo fine > after.txt && cat after.txt && pwd")
    assert result.exit_code == 0 and result.stdout.startswith("fine\n"), (result.stdout, result.stderr)


def test_layout_home_symlink_and_identity(bwrap_sandbox):
    session = bwrap_sandbox.start(FILES)
    result = session.run("pwd; id -u; readlink -f /rl_environment; ls /rl_environment; cat notes.txt; hostname")
    assert result.exit_code == 0
    assert result.stdout.split("\n")[:6] == ["/root", "0", "/root/rl_environment", "compute_reward.py", "hello", "sandbox"]


def test_files_and_working_directory_persist_between_commands_but_not_for_probes(bwrap_sandbox):
    session = bwrap_sandbox.start(FILES)
    assert session.run("cd /rl_environment && echo 'x = 1' > new.py").exit_code == 0
    assert session.run("pwd").stdout.strip() == "/rl_environment"
    assert session.run("cat new.py").stdout == "x = 1\n"
    probe = session.run("rm -f new.py; cd /; echo gone", persist=False)
    assert probe.stdout.strip() == "gone"
    assert session.run("pwd; ls").stdout.split() == ["/rl_environment", "compute_reward.py", "new.py"]
    assert session.files()["rl_environment/new.py"] == b"x = 1\n"


def test_reading_and_writing_outside_the_workspace_is_impossible(bwrap_sandbox, tmp_path):
    secret = tmp_path / "host_secret.txt"
    secret.write_text("do not touch\n")
    escape = Path("/tmp") / f"rewardlab_escape_{secrets.token_hex(4)}"
    session = bwrap_sandbox.start(FILES)
    result = session.run(
        f"cat {secret}; echo pwned > {secret}; echo x > {escape}; ls /work /home; cat /etc/shadow; "
        "touch /usr/bin/rewardlab_evil; echo x >> /etc/passwd; ls ..; echo done")
    assert result.stdout.strip().endswith("done")
    assert "No such file or directory" in result.stderr and "Read-only file system" in result.stderr
    assert "do not touch" not in result.stdout
    assert secret.read_text() == "do not touch\n"
    assert not escape.exists() and not Path("/usr/bin/rewardlab_evil").exists()
    _assert_still_works(session)


def test_no_network_not_even_the_hosts_loopback(bwrap_sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    session = bwrap_sandbox.start(FILES)
    code = (f"import socket\nfor host in ('127.0.0.1', '1.1.1.1', '8.8.8.8'):\n    try:\n"
            f"        socket.create_connection((host, {port} if host == '127.0.0.1' else 53), timeout=2)\n"
            "        print('CONNECTED', host)\n    except OSError as e:\n        print('blocked', host, e.errno)\n")
    result = session.run(f"python3 -c \"{code}\"")
    thread.join()
    server.close()
    assert "CONNECTED" not in result.stdout and result.stdout.count("blocked") == 3, result.stdout + result.stderr
    assert accepted == []
    _assert_still_works(session)


def test_fork_bomb_is_capped_and_leaves_no_process(bwrap_sandbox):
    session = bwrap_sandbox.start(FILES)
    started = time.monotonic()
    result = session.run("bomb() { bomb | bomb & }; bomb; sleep 2")
    assert time.monotonic() - started < 12
    assert "Resource temporarily unavailable" in result.stderr or result.timed_out
    assert session.command_host_pids() == []
    _assert_still_works(session)


def test_memory_is_limited_per_process_and_in_total():
    sandbox = BubblewrapSandbox(SandboxLimits(command_timeout=6, memory_bytes=300 << 20, total_memory_bytes=200 << 20))
    session = sandbox.start(FILES)
    single = session.run("python3 -c 'x = bytearray(2 * 1024**3)'")
    assert single.exit_code != 0 and "MemoryError" in single.stderr
    several = session.run(
        "for i in 1 2 3 4; do python3 -c 'import time; x = bytearray(120 * 1024**2); time.sleep(20)' & done; wait")
    assert not several.timed_out and any("memory limit" in note for note in several.notes), several.notes
    assert several.seconds < 6
    _assert_still_works(session)


def test_disk_use_is_bounded_per_file_and_per_workspace():
    limits = SandboxLimits(command_timeout=6, disk_bytes=24 << 20, file_size_bytes=8 << 20)
    session = BubblewrapSandbox(limits).start(FILES)
    big = session.run("head -c 50M /dev/zero > big.bin; ls -l big.bin")
    assert "File size limit exceeded" in big.stderr or "file size limit" in " ".join(big.notes)
    fill = session.run("for i in 1 2 3 4 5 6; do head -c 7M /dev/zero > fill$i.bin; done; df -k /root | tail -1")
    assert "No space left on device" in fill.stderr
    assert sum(len(content) for content in session.files().values()) <= limits.disk_bytes
    assert session.run("rm -f *.bin && echo cleaned").stdout.strip() == "cleaned"
    _assert_still_works(session)


def test_endless_output_is_stopped_truncated_and_reported(bwrap_sandbox):
    session = bwrap_sandbox.start(FILES)
    result = session.run("yes 'spam spam spam'")
    cap = bwrap_sandbox.limits.output_bytes
    assert result.output_truncated and len(result.stdout.encode()) == cap
    assert not result.timed_out and result.seconds < 3
    assert any("output exceeded" in note for note in result.notes)
    _assert_still_works(session)


def test_background_processes_do_not_survive_their_command(bwrap_sandbox):
    marker = f"rewardlab_bg_{secrets.token_hex(4)}"
    session = bwrap_sandbox.start(FILES)
    result = session.run(
        f"(exec -a {marker}_a sleep 300) & nohup bash -c 'exec -a {marker}_b sleep 300' >/dev/null 2>&1 & "
        f"setsid bash -c 'exec -a {marker}_c sleep 300' & disown; echo launched")
    assert result.stdout.strip() == "launched" and result.seconds < 3
    assert _processes_with(marker) == []
    listing = session.run("ps -eo args")
    assert marker not in listing.stdout
    _assert_still_works(session)


def test_wall_clock_timeout_kills_the_whole_tree(bwrap_sandbox):
    marker = f"rewardlab_loop_{secrets.token_hex(4)}"
    session = bwrap_sandbox.start(FILES)
    result = session.run(f"bash -c 'exec -a {marker} sleep 300' & while true; do :; done", timeout=1.5)
    assert result.timed_out and result.exit_code != 0 and 1.4 < result.seconds < 6
    assert any("timed out" in note for note in result.notes)
    assert _processes_with(marker) == []
    _assert_still_works(session)


def test_cpu_time_limit_stops_a_busy_command_before_the_wall_clock():
    sandbox = BubblewrapSandbox(SandboxLimits(command_timeout=30, cpu_seconds=1))
    session = sandbox.start(FILES)
    result = session.run("while true; do :; done")
    assert not result.timed_out and result.exit_code != 0 and result.seconds < 20
    assert "CPU time limit reached" in result.stderr + " ".join(result.notes), (result.stderr, result.notes)
    _assert_still_works(session)


def test_missing_bwrap_stops_with_install_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        find_bwrap()
    with pytest.raises(SandboxUnavailable, match="--sandbox none"):
        make_sandbox("bwrap")


def test_unsandboxed_mode_is_explicit_and_behaves_like_the_sandbox():
    with pytest.raises(ValueError, match="unknown sandbox"):
        make_sandbox("docker")
    sandbox = make_sandbox("none")
    assert isinstance(sandbox, UnsandboxedLocal) and sandbox.kind == "none"
    session = sandbox.start(FILES)
    try:
        assert session.run("cd rl_environment && echo y > b.txt").exit_code == 0
        assert session.run("pwd").stdout.strip().endswith("/rl_environment")
        assert session.run("rm b.txt", persist=False).exit_code == 0
        assert session.files()["rl_environment/b.txt"] == b"y\n"
        assert session.run("sleep 5", timeout=0.5).timed_out
    finally:
        session.close()
    assert not session.root.exists()


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_result_channel_is_separate_from_output_and_survives_output_floods(kind):
    sandbox = make_sandbox(kind, SandboxLimits(command_timeout=3, output_bytes=2000))
    session = sandbox.start(FILES)
    try:
        both = session.run('echo out; echo err >&2; printf \'{"v": 1}\' >&"$RL_RESULT_FD"', channel=True)
        assert (both.stdout, both.stderr, both.channel) == ("out\n", "err\n", b'{"v": 1}')
        assert not both.channel_truncated
        flood = session.run('printf kept >&"$RL_RESULT_FD"; yes "fake result"; yes >&2', channel=True)
        assert flood.output_truncated and len(flood.stdout) == 2000 and flood.channel == b"kept"
        big = session.run('head -c 100000 /dev/zero | tr "\\0" x >&"$RL_RESULT_FD"; echo done', channel=True)
        assert big.stdout == "done\n" and big.channel == b"x" * (64 << 10) and big.channel_truncated
        assert any("result channel exceeded" in note for note in big.notes)
        plain = session.run('echo "${RL_RESULT_FD:-unset}"')
        assert plain.stdout == "unset\n" and plain.channel is None
        _assert_still_works(session)
    finally:
        session.close()
