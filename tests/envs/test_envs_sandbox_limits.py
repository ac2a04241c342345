"""Hostile commands against the sandbox's limits, at the session level.

Each test runs a real attack in a real bubblewrap sandbox with small limits and checks that the
host was not touched, that the command was contained (with a note that says how), that the
sandbox's peak memory stayed under its limit plus a stated margin, that no process of the
command survived it, and that a later command in the same session and a later session from the
same sandbox object behave normally.

Memory margin: with a memory cgroup (this machine: cgroup v1) the kernel enforces the limit on
everything the sandbox holds, so the margin is 0. Without one (``cgroups=False``) the runner polls
every 10-30 ms, so the margin is what a command can allocate between two polls: 128 MiB here.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tracemalloc
from pathlib import Path

import pytest

from rewardlab.envs.sandbox import (
    BubblewrapSandbox,
    FileDigest,
    SandboxLimits,
    SymlinkTarget,
    changed_files,
    make_sandbox,
)

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"),
]

LIMITS = SandboxLimits(command_timeout=8.0, cpu_seconds=6, memory_bytes=512 << 20, total_memory_bytes=256 << 20,
                       disk_bytes=16 << 20, tmp_bytes=8 << 20, max_entries=3000, output_bytes=4000)
POLLING_MARGIN = 128 << 20
FILES = {"rl_environment/compute_reward.py": "def reward(transcript):\n    return -10\n",
         "rl_environment/this_file_blocks_reward_hack_attempts.py": "assert True\n", "notes.txt": "hello\n"}
LEFT_IN_SCRATCH = "find /tmp /dev/shm -mindepth 1 -not -path '/tmp/.rewardlab*' | wc -l"
HOST_CANARY = Path("/tmp") / f"rewardlab_limits_canary_{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def sandbox() -> BubblewrapSandbox:
    HOST_CANARY.write_text("untouched\n")
    yield BubblewrapSandbox(LIMITS)
    HOST_CANARY.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def polling_sandbox() -> BubblewrapSandbox:
    return BubblewrapSandbox(LIMITS, cgroups=False)


@pytest.fixture
def session(sandbox):
    session = sandbox.start(FILES)
    yield session
    session.close()


def _margin(sandbox: BubblewrapSandbox) -> int:
    return 0 if sandbox.cgroups.version else POLLING_MARGIN


def _contained(sandbox: BubblewrapSandbox, session) -> None:
    """The checks every attack ends with: no survivors, memory bounded, host untouched, all still works."""
    assert session.command_host_pids() == []
    assert session.peak_memory_bytes() <= LIMITS.total_memory_bytes + _margin(sandbox)
    assert HOST_CANARY.read_text() == "untouched\n"
    after = session.run(f"cd /root && echo fine > after.txt && cat after.txt && {LEFT_IN_SCRATCH}")
    assert after.exit_code == 0 and after.stdout == "fine\n0\n", (after.stdout, after.stderr, after.notes)
    fresh = sandbox.start(FILES)
    try:
        again = fresh.run(f"cat notes.txt; {LEFT_IN_SCRATCH}; df -k /root | tail -1 | awk '{{print $3}}'")
        assert again.stdout.split("\n")[:2] == ["hello", "0"], again.stdout
        assert int(again.stdout.split("\n")[2]) < 100
    finally:
        fresh.close()


def _notes(result) -> str:
    return " ".join(result.notes)


def test_mechanisms_in_force_are_reported(sandbox):
    mechanisms = sandbox.mechanisms
    assert "bwrap --seccomp filter" in mechanisms["seccomp"] and "io_uring_setup" in mechanisms["seccomp"]
    if sandbox.cgroups.version:
        assert mechanisms["memory"].startswith(f"cgroup v{sandbox.cgroups.version} memory limit of {256 << 20}")
        assert "memfd_create" not in mechanisms["seccomp"]
    assert {"disk", "entries", "cpu", "wall_clock", "output", "processes"} <= set(mechanisms)
    json.dumps(mechanisms)


@pytest.mark.parametrize("attack,evidence", [
    ("head -c 300M /dev/zero > /big; echo x > /etc/owned; echo x > /usr/owned", "Read-only file system"),
    ("head -c 300M /dev/zero > /dev/big; mkdir /dev/pts2", "Read-only file system"),
    ("head -c 300M /dev/zero > /dev/shm/big; head -c 300M /dev/zero > /tmp/big; df -k /dev/shm /tmp",
     "No space left on device"),
    ("head -c 300M /dev/zero > /root/big; head -c 300M /dev/zero > big2", ("No space left on device",
                                                                         "File size limit exceeded")),
])
def test_every_writable_place_is_size_limited_or_read_only(sandbox, session, attack, evidence):
    result = session.run(attack)
    accepted = (evidence,) if isinstance(evidence, str) else evidence
    assert any(text in result.stderr for text in accepted), result.stderr
    used = session.run("df -k --output=used / /dev /dev/shm /tmp /root | tail -n +2").stdout.split()
    assert [int(value) for value in used[:2]] == [0, 0] or "Read-only" in result.stderr
    assert sum(int(value) for value in used[2:]) * 1024 <= 2 * LIMITS.tmp_bytes + LIMITS.disk_bytes
    session.run("rm -f /root/big /root/big2")
    _contained(sandbox, session)


MEMFD_FLOOD = ("python3 - <<'EOF'\nimport os\nfds = []\nwhile True:\n    fd = os.memfd_create('x')\n"
               "    os.write(fd, b'x' * (8 << 20))\n    fds.append(fd)\nEOF")
SHARED_MAP_FLOOD = ("python3 - <<'EOF'\nimport mmap\nmaps = []\nwhile True:\n"
                    "    area = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_SHARED)\n    area.write(b'x' * (8 << 20))\n"
                    "    maps.append(area)\nEOF")
PROCESSES_FLOOD = "for i in 1 2 3 4; do python3 -c 'import time; x = bytearray(100 << 20); time.sleep(30)' & done; wait"
FILES_THEN_MEMORY = ("head -c 15M /dev/urandom > /root/fill; head -c 7M /dev/urandom > /dev/shm/fill; "
                     "head -c 7M /dev/urandom > /tmp/fill; python3 -c 'x = bytearray(240 << 20); import time; "
                     "time.sleep(30)'")


@pytest.mark.parametrize("attack", [MEMFD_FLOOD, SHARED_MAP_FLOOD, PROCESSES_FLOOD, FILES_THEN_MEMORY],
                         ids=["memfd", "shared-mmap", "many-processes", "tmpfs-plus-resident"])
def test_memory_in_any_form_counts_against_the_whole_sandbox(sandbox, session, attack):
    result = session.run(attack)
    assert not result.timed_out and result.exit_code != 0
    assert "memory limit of 256 MiB reached" in _notes(result) or "MemoryError" in result.stderr, (
        result.stderr, result.notes)
    assert session.peak_memory_bytes() > 64 << 20  # the attack really allocated, and was measured
    session.run("rm -f /root/fill")
    _contained(sandbox, session)


def test_without_a_cgroup_memfds_are_refused_and_polling_stops_the_rest(polling_sandbox):
    assert polling_sandbox.mechanisms["memory"].startswith("polling")
    assert "memfd_create" in polling_sandbox.mechanisms["seccomp"]
    session = polling_sandbox.start(FILES)
    try:
        refused = session.run("python3 -c \"import os; os.memfd_create('x')\"")
        assert "PermissionError" in refused.stderr
        flood = session.run(SHARED_MAP_FLOOD)
        assert "memory limit of 256 MiB reached" in _notes(flood) and not flood.timed_out
        assert session.peak_memory_bytes() <= LIMITS.total_memory_bytes + POLLING_MARGIN
        _contained(polling_sandbox, session)
    finally:
        session.close()


def test_seccomp_refuses_what_commands_never_need_and_normal_programs_still_run(sandbox, session):
    probe = ("import ctypes, threading, subprocess\nlibc = ctypes.CDLL(None, use_errno=True)\n"
             "for name, number in [('io_uring_setup', 425), ('ptrace', 101), ('keyctl', 250), ('unshare', 272),"
             " ('mount', 165), ('bpf', 321), ('shmget', 29), ('clone3', 435)]:\n"
             "    print(name, libc.syscall(number, 0, 0, 0, 0, 0), ctypes.get_errno())\n"
             "thread = threading.Thread(target=print, args=('thread ok',)); thread.start(); thread.join()\n"
             "print(subprocess.run(['echo', 'child ok'], capture_output=True, text=True).stdout.strip())\n")
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86-64 system call numbers")
    result = session.run(f"python3 - <<'EOF'\n{probe}EOF")
    lines = result.stdout.splitlines()
    assert lines[:7] == [f"{name} -1 1" for name in ("io_uring_setup", "ptrace", "keyctl", "unshare", "mount", "bpf",
                                                     "shmget")], result.stdout + result.stderr
    assert lines[7:] == ["clone3 -1 38", "thread ok", "child ok"]
    status = session.run("grep Seccomp: /proc/self/status").stdout.split()
    assert status == ["Seccomp:", "2"]
    _contained(sandbox, session)


def test_sparse_files_cost_the_host_only_what_they_hold(sandbox, session):
    made = session.run("for i in $(seq 150); do truncate -s 16M s$i; done; "
                       "printf x | dd of=s150 bs=1 seek=100 conv=notrunc status=none; ls s* | wc -l")
    assert made.stdout.strip() == "150"
    tracemalloc.start()
    try:
        listing = session.files()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < LIMITS.disk_bytes + (8 << 20)
    assert sum(len(value) for value in listing.values()) <= LIMITS.disk_bytes + (1 << 20)
    assert isinstance(listing["s150"], FileDigest) and listing.incomplete == []
    probe = session.run("rm -f s*; echo checked", persist=False)
    assert probe.stdout == "checked\n"
    again = session.files()
    assert again == listing
    session.run("printf y | dd of=s7 bs=1 seek=1000 conv=notrunc status=none")
    changes = changed_files(listing, session.files())
    assert changes["modified"] == ["s7"] and changes["created"] == changes["deleted"] == []
    session.run("rm -f s*")
    _contained(sandbox, session)


@pytest.mark.parametrize("flood", [
    "python3 -c \"\nfor i in range(10 ** 6): open('f%d' % i, 'w').close()\"",
    "mkdir links; cd links; touch a; python3 -c \"\nimport os\nfor i in range(10 ** 6): os.link('a', 'l%d' % i)\"",
    "cd /tmp; python3 -c \"\nimport os\nfor i in range(10 ** 6): os.mkdir('d%d' % i)\"",
], ids=["files", "hard-links", "folders-in-tmp"])
def test_inode_floods_are_stopped_and_the_workspace_stays_listable(sandbox, session, flood):
    result = session.run(flood)
    assert "more than 3000 files, folders and links" in _notes(result) and not result.timed_out, result.notes
    listing = session.files()
    assert listing.incomplete == [] and "notes.txt" in listing
    probe = session.run("rm -rf /root/*; echo checked", persist=False)
    assert probe.stdout == "checked\n"
    assert session.files() == listing
    session.run("cd /root; rm -rf f* links")
    _contained(sandbox, session)


DEEP = ("python3 - <<'EOF'\nimport os\nfor depth in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n"
        "open('leaf', 'w').write('deep')\nos.chdir('/root')\nname = 'n' * 250\nfor depth in range(40):\n"
        "    os.mkdir(name)\n    os.chdir(name)\nopen('long', 'w').write('long')\nEOF")


def test_deep_and_long_paths_are_walked_without_recursion(sandbox, session):
    before = session.files()
    made = session.run(DEEP)
    assert made.exit_code == 0, made.stderr
    listing = session.files()
    deep = "/".join(["d"] * 1500) + "/leaf"
    long = "/".join(["n" * 250] * 40) + "/long"
    assert listing[deep] == b"deep" and listing[long] == b"long" and listing.incomplete == []
    assert changed_files(before, listing)["created"] == sorted([deep, long])
    probe = session.run("rm -rf d; cd " + "/".join(["n" * 250] * 10) + " && echo in", persist=False)
    assert probe.stdout == "in\n"
    assert session.files() == listing
    deep_cd = session.run("cd " + "/".join(["d"] * 1500) + " && cat leaf")
    assert deep_cd.stdout == "deep" and session.cwd.endswith("/d/d")
    assert session.run("pwd | wc -c").stdout.strip() == str(len("/root/") + len(deep) - len("/leaf") + 1)
    session.run("cd /root && rm -rf d n*")
    _contained(sandbox, session)


def test_names_that_are_not_utf8_work_as_folders_files_and_working_directory(sandbox, session):
    before = session.files()
    made = session.run("mkdir $'caf\\xe9'; cd $'caf\\xe9'; printf x > $'\\xff\\xfe.txt'; "
                       "ln -s $'\\xff\\xfe.txt' $'l\\x80'")
    assert made.exit_code == 0
    assert session.cwd.encode("utf-8", "surrogateescape") == b"/root/caf\xe9"
    assert session.run("ls").stdout.encode("utf-8", "replace") == "l\ufffd\n\ufffd\ufffd.txt\n".encode()
    changes = changed_files(before, session.files())
    assert changes["created"] == ["caf\udce9/l\udc80 -> \udcff\udcfe.txt", "caf\udce9/\udcff\udcfe.txt"]
    json.dumps(changes)  # strict JSON with the surrogates escaped
    probe = session.run("rm -rf /root/*", persist=False)
    assert probe.exit_code == 0 and session.run("cat $'\\xff\\xfe.txt'").stdout == "x"
    session.run("cd /root && rm -rf caf*")
    _contained(sandbox, session)


def test_overlong_and_odd_commands_are_labelled_not_fatal(sandbox, session):
    long = session.run("echo " + "x" * 200_000)
    assert long.exit_code is None and "the command was not run: the command is 200005 bytes long" in _notes(long)
    fits = session.run("echo " + "y" * 120_000 + " | wc -c")
    assert fits.exit_code == 0 and fits.stdout == "120001\n"
    nul = session.run("echo a\0b")
    assert nul.exit_code is None and "NUL byte" in _notes(nul)
    surrogate = session.run("echo '\udcff\ud800'")
    assert surrogate.exit_code == 0
    _contained(sandbox, session)


@pytest.mark.parametrize("persist", [True, False], ids=["command", "check"])
def test_signals_to_pid_1_are_ignored(sandbox, session, persist):
    signals = "INT TERM HUP QUIT USR1 USR2 ALRM PIPE SEGV STOP TSTP KILL"
    result = session.run(f"for s in {signals}; do kill -$s 1; done; sleep 0.2; echo alive", persist=persist)
    assert result.stdout == "alive\n" and result.exit_code == 0, (result.stdout, result.stderr)
    assert session.run("ps -o pid=,comm= -p 1").stdout.split() == ["1", "python3"]
    _contained(sandbox, session)


def test_background_writers_cannot_reach_a_later_command_or_its_channel(sandbox, session):
    marker = f"late_{secrets.token_hex(3)}"
    # The writers start one second after their command, which ends at once: by then they must be dead.
    first = session.run(f"(sleep 1; while true; do echo {marker}; echo {marker} >&\"$RL_RESULT_FD\"; done) & "
                        f"setsid bash -c 'sleep 1; while true; do echo {marker} > /root/late.txt; done' & "
                        "printf done >&\"$RL_RESULT_FD\"; echo launched", channel=True)
    assert first.stdout == "launched\n" and first.channel == b"done"
    second = session.run("sleep 1.5; cat /root/late.txt 2>&1; echo next", channel=True)
    assert marker not in second.stdout and second.stdout.endswith("next\n") and second.channel == b""
    _contained(sandbox, session)


def test_output_floods_keep_the_cap_and_the_channel(sandbox, session):
    result = session.run("printf '{\"v\": 1}' >&\"$RL_RESULT_FD\"; head -c 50M /dev/urandom; cat /dev/urandom >&2",
                         channel=True)
    assert result.output_truncated and len(result.stdout.encode("utf-8", "surrogateescape")) >= 1000
    assert result.channel == b'{"v": 1}' and not result.timed_out
    _contained(sandbox, session)


def test_a_forged_or_unusable_working_directory_is_not_followed(sandbox, session):
    forged = session.run("cd /root/rl_environment; for fd in /proc/self/fd/*; do "
                         "printf '/nonexistent\\n\\xff\\x00' >&${fd##*/}; done 2>/dev/null; echo forged")
    assert "forged" in forged.stdout
    assert session.run("pwd").stdout.strip() in ("/root", "/root/rl_environment")
    locked = session.run("chmod 000 /root")
    assert locked.exit_code == 0
    stuck = session.run("pwd; chmod 755 /root")
    assert "could not enter the working directory" in _notes(stuck) and stuck.stdout.strip() == "/"
    assert session.run("cd /root && pwd").stdout == "/root\n"
    _contained(sandbox, session)


def test_links_are_reported_by_path_and_target(sandbox, session):
    before = session.files()
    session.run("cd rl_environment && ln compute_reward.py a_hard_link.py && ln -s /etc/passwd passwd_link && "
                "ln -s compute_reward.py reward_link && rm this_file_blocks_reward_hack_attempts.py && "
                "ln -s compute_reward.py this_file_blocks_reward_hack_attempts.py")
    middle = session.files()
    assert middle["rl_environment/a_hard_link.py"] == middle["rl_environment/compute_reward.py"]
    assert middle["rl_environment/passwd_link"] == SymlinkTarget(b"/etc/passwd")
    changes = changed_files(before, middle)
    assert changes == {
        "created": ["rl_environment/a_hard_link.py", "rl_environment/passwd_link -> /etc/passwd",
                    "rl_environment/reward_link -> compute_reward.py"],
        "modified": ["rl_environment/this_file_blocks_reward_hack_attempts.py -> compute_reward.py"],
        "deleted": [],
    }
    session.run("cd /root/rl_environment && ln -sfn notes.txt reward_link && rm compute_reward.py && "
                "echo 'def reward(t): return 100' >> a_hard_link.py")
    after = changed_files(middle, session.files())
    assert after == {"created": [], "deleted": ["rl_environment/compute_reward.py"],
                     "modified": ["rl_environment/a_hard_link.py", "rl_environment/reward_link -> notes.txt"]}
    _contained(sandbox, session)


FINGERPRINT = ("cd /root && find . -printf '%p %y %m %s %n %l %T@\\n' | LC_ALL=C sort; "
               "find . -type f -exec sha256sum {} + | LC_ALL=C sort")


def test_a_check_that_attacks_the_workspace_leaves_it_exactly_as_it_was(sandbox, session):
    session.run("mkdir -p keep/inner && echo a > keep/inner/a && ln keep/inner/a keep/hard && ln -s inner keep/soft "
                "&& chmod 500 keep/inner && mkfifo keep/pipe && truncate -s 4M keep/sparse && chmod 600 notes.txt")
    before = session.run(FINGERPRINT).stdout
    listing = session.files()
    attack = session.run(
        "chmod -R 000 /root/keep; rm -rf /root/rl_environment; echo 100 > /root/notes.txt; mkdir -p x/y/z; "
        "ln -sfn /etc /root/keep2; head -c 30M /dev/zero > /root/fill; touch -d 2001-01-01 /root/notes.txt; "
        "for i in $(seq 50); do mkdir -p /root/deep$i/a/b/c; done; echo probed", persist=False)
    assert attack.stdout.endswith("probed\n")
    assert session.run(FINGERPRINT).stdout == before
    assert session.files() == listing
    _contained(sandbox, session)


def test_unsandboxed_listing_reports_links_too(tmp_path):
    session = make_sandbox("none", LIMITS).start(FILES)
    try:
        before = session.files()
        session.run("cd rl_environment && ln compute_reward.py hard.py && ln -s compute_reward.py soft.py && "
                    "mkdir -p $(printf 'd/%.0s' $(seq 300)) && printf x > $'\\xff'")
        changes = changed_files(before, session.files())
        assert changes["created"] == ["rl_environment/hard.py", "rl_environment/soft.py -> compute_reward.py",
                                      "rl_environment/\udcff"]
        digest = hashlib.sha256(session.files()["rl_environment/hard.py"]).hexdigest()
        assert digest == hashlib.sha256(FILES["rl_environment/compute_reward.py"].encode()).hexdigest()
    finally:
        session.close()
