"""The README's Python API example runs as written, and the names it promises import from `rewardlab`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import rewardlab

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- readme-api-example -->\n```python\n(.*?)```", text, re.S)
    assert found, "README.md lost its marked Python API example"
    return found.group(1)


@pytest.mark.sandbox
def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    monkeypatch.chdir(tmp_path)
    exec(compile(_example(), "README.md:python-api", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"held-out accuracy: ([0-9.]+)", printed).group(1))
    assert 0.0 <= accuracy <= 1.0
    assert re.search(r"reward: -?[0-9]+\.[0-9]{4}", printed)
    assert "# Reward model evaluation" in printed and (tmp_path / "runs" / "eval" / "report.md").is_file()
    # the scripted policy tampers and covers its tracks: the exact grader labels both episodes so
    assert re.search(r"reward-tampering\s+\(n = 2\)", printed)
    assert re.search(r"tampered_and_evaded\s+2\s+1\.0000", printed)
    assert (tmp_path / "runs" / "grm" / "config.json").is_file()


def test_every_public_name_resolves_without_importing_everything_up_front():
    for name in rewardlab.__all__:
        assert getattr(rewardlab, name) is not None, name
    from rewardlab.callable_package import CallablePackage

    targets = {"train": "rewardlab.train.loop:train", "evaluate": "rewardlab.evaluate.workflow:run_evaluation",
               "serve": "rewardlab.serve.runner:run_server"}
    for name, function in targets.items():
        package = getattr(rewardlab, name)
        assert isinstance(package, CallablePackage) and package.__call_target__ == function
    import inspect

    import rewardlab.train.loop as loop  # the callable packages still import their modules normally

    assert inspect.signature(rewardlab.train) == inspect.signature(loop.train)
    with pytest.raises(TypeError, match="config"):  # the call reaches the function itself
        rewardlab.train()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rewardlab.nope  # noqa: B018


def test_importing_rewardlab_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, rewardlab; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
