"""The machine description printed beside every measured number."""

import torch

from rewardlab import __version__
from rewardlab.machine import describe_machine, package_versions


def test_description_names_versions_and_hardware():
    info = describe_machine(("torch", "transformers", "no-such-distribution-xyz"))
    assert info["rewardlab"] == __version__
    assert info["torch"] == torch.__version__
    assert info["transformers"][0].isdigit()
    assert info["no-such-distribution-xyz"] == "not installed"
    assert int(info["cpu cores"]) >= 1 and info["cpu"] and info["platform"]
    assert info["torch threads"] == str(torch.get_num_threads())


def test_versions_only_for_the_packages_asked():
    assert set(package_versions(())) == {"rewardlab", "python"}
