"""`rewardlab --version` and `python -m rewardlab`."""

import subprocess
import sys

import pytest

from rewardlab import __version__
from rewardlab.cli import main


def test_version_flag_prints_the_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"rewardlab {__version__}"


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "rewardlab", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"rewardlab {__version__}"
    usage = subprocess.run([sys.executable, "-m", "rewardlab"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "usage: rewardlab" in usage.stderr
