"""The `rewardlab-bwrap` Inspect sandbox plugin: any Inspect task can run in rewardlab's bubblewrap sandbox."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

pytest.importorskip("inspect_ai", reason="the Inspect integration needs inspect_ai: pip install 'rewardlab[inspect]'")

import anyio  # noqa: E402
from inspect_ai import Task  # noqa: E402
from inspect_ai import eval as inspect_eval  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.model import ModelOutput, ModelUsage, get_model  # noqa: E402
from inspect_ai.scorer import Score, Target, accuracy, scorer  # noqa: E402
from inspect_ai.solver import TaskState, generate, use_tools  # noqa: E402
from inspect_ai.tool import bash  # noqa: E402
from inspect_ai.util import OutputLimitExceededError, SandboxUserUnsupportedError, sandbox  # noqa: E402

from rewardlab.envs.sandbox import SandboxLimits  # noqa: E402
from rewardlab.errors import ConfigError  # noqa: E402
from rewardlab.integrations.inspect.sandbox import RewardlabBwrapConfig, RewardlabBwrapSandbox, limits_of  # noqa: E402

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap"),
]


def _offline(output: ModelOutput) -> ModelOutput:
    output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)  # no tiktoken count (offline)
    return output


@scorer(metrics=[accuracy()])
def _file_written() -> object:
    async def score(state: TaskState, target: Target) -> Score:
        content = await sandbox().read_file("out/answer.txt")
        return Score(value="C" if content == target.text else "I", answer=content)

    return score


def test_an_ordinary_inspect_task_with_the_bash_tool_runs_in_the_plugin(tmp_path) -> None:
    """Inspect's own `bash()` tool, sample files and a scorer reading the sandbox, with nothing from rewardlab but the plugin."""
    command = ("mkdir -p out && tr a-z A-Z < notes.txt > out/answer.txt; ls /work 2>&1; cat /etc/shadow 2>&1; "
               "python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 80), 2)' 2>&1 | tail -1")
    outputs = [_offline(ModelOutput.for_tool_call("mockllm", "bash", {"command": command})),
               _offline(ModelOutput.from_content("mockllm", "Done."))]
    task = Task(dataset=[Sample(input="Shout the notes.", target="HELLO FROM THE HOST\n",
                                files={"notes.txt": "hello from the host\n"})],
                solver=[use_tools(bash(timeout=10)), generate()], scorer=_file_written(),
                sandbox=("rewardlab-bwrap", RewardlabBwrapConfig(command_timeout=10)))
    log = inspect_eval(task, model=get_model("mockllm/model", custom_outputs=outputs, memoize=False), display="none",
                       log_dir=str(tmp_path))[0]
    assert log.status == "success", log.error
    sample = log.samples[0]
    assert sample.scores["_file_written"].value == "C"
    tool_output = next(m for m in sample.messages if m.role == "tool").text
    assert "No such file or directory" in tool_output  # /work (the host's files) is not visible
    assert "/etc/shadow" in tool_output and "root:" not in tool_output
    assert "Network is unreachable" in tool_output  # no network
    assert any(event.event == "sandbox" and event.action == "exec" for event in sample.events)


@pytest.fixture
def plugin():
    """A sandbox as Inspect's sample_init makes it (short limits), cleaned up as sample_cleanup does."""
    environments = anyio.run(RewardlabBwrapSandbox.sample_init, "test",
                             RewardlabBwrapConfig(command_timeout=3, output_bytes=4096), {})
    yield environments["default"]
    anyio.run(RewardlabBwrapSandbox.sample_cleanup, "test", None, environments, False)


def test_files_round_trip_exactly_and_errors_are_the_documented_ones(plugin) -> None:
    async def check() -> None:
        binary = bytes(range(256)) * 700  # 179,200 bytes: several write commands and read pieces
        await plugin.write_file("deep/er/data.bin", binary)
        assert await plugin.read_file("/root/deep/er/data.bin", text=False) == binary
        await plugin.write_file("crlf.txt", "one\r\ntwo\n")
        assert await plugin.read_file("crlf.txt") == "one\r\ntwo\n"
        await plugin.write_file("empty", b"")
        assert await plugin.read_file("empty", text=False) == b""
        with pytest.raises(FileNotFoundError):
            await plugin.read_file("missing.txt")
        with pytest.raises(IsADirectoryError):
            await plugin.read_file("deep")
        with pytest.raises(IsADirectoryError):
            await plugin.write_file("deep", "x")
        with pytest.raises(PermissionError, match="emptied after every command"):
            await plugin.write_file("/tmp/setup.sh", "echo hi")
        with pytest.raises(PermissionError, match="Read-only file system"):
            await plugin.write_file("/usr/local/evil", "x")
        await plugin.write_file("latin1.txt", b"caf\xe9")
        with pytest.raises(UnicodeDecodeError):
            await plugin.read_file("latin1.txt")

    anyio.run(check)


def test_exec_takes_input_cwd_env_and_reports_limits(plugin) -> None:
    async def check() -> None:
        await plugin.write_file("sub/x.txt", "x")
        result = await plugin.exec(["bash", "-c", 'pwd; echo "$GREETING"; cat'], input="from stdin", cwd="sub",
                                   env={"GREETING": "it's 'quoted' $HOME"})
        assert result.success and result.stdout == "/root/sub\nit's 'quoted' $HOME\nfrom stdin"
        big = "y" * 300_000  # past the 128 KiB argument limit: staged in a file, then removed
        counted = await plugin.exec(["python3", "-c", "import sys; print(len(sys.stdin.read()))"], input=big)
        assert counted.stdout == "300000\n"
        assert (await plugin.exec(["ls", "-A", "/root"])).stdout.split() == ["sub"]
        failed = await plugin.exec(["bash", "-c", "echo oops >&2; exit 3"])
        assert (failed.success, failed.returncode, failed.stderr) == (False, 3, "oops\n")
        assert (await plugin.exec(["no-such-program"])).returncode == 127
        with pytest.raises(TimeoutError):
            await plugin.exec(["sleep", "10"], timeout=1)
        with pytest.raises(OutputLimitExceededError):
            await plugin.exec(["yes"])
        with pytest.raises(SandboxUserUnsupportedError):
            await plugin.exec(["id"], user="nobody")
        assert (await plugin.exec(["id", "-u"], user="root")).stdout == "0\n"

    anyio.run(check)


def test_exec_never_moves_the_working_directory_of_rewardlab_commands(plugin) -> None:
    session = plugin.session
    session.run("mkdir -p a && cd a")
    assert anyio.run(plugin.exec, ["pwd"]).stdout == "/root\n"
    assert session.run("pwd").stdout == "/root/a\n"
    assert anyio.run(plugin.exec, ["bash", "-c", "cd /; pwd"]).stdout == "/\n"
    assert session.run("pwd").stdout == "/root/a\n"


def test_the_config_names_every_sandbox_limit_and_rejects_bad_ones(tmp_path) -> None:
    assert set(RewardlabBwrapConfig.model_fields) == {f.name for f in dataclasses.fields(SandboxLimits)}
    assert limits_of(None) == SandboxLimits()
    assert limits_of(RewardlabBwrapConfig(command_timeout=5)) == SandboxLimits(command_timeout=5)
    path = tmp_path / "limits.json"
    path.write_text(json.dumps({"output_bytes": 123}))
    assert limits_of(str(path)) == SandboxLimits(output_bytes=123)
    path.write_text(json.dumps({"output_byte": 123}))
    with pytest.raises(ConfigError, match="unknown field.*output_byte"):
        limits_of(str(path))
    with pytest.raises(ConfigError, match="must be positive"):
        limits_of(RewardlabBwrapConfig(command_timeout=-1))
    assert RewardlabBwrapSandbox.config_deserialize({"cpu_seconds": 2}) == RewardlabBwrapConfig(cpu_seconds=2)
