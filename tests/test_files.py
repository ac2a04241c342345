"""Atomic writes: complete new content or the old content, and no temporary files left behind."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from rewardlab.files import read_json_store, save_figure_atomic, write_json_atomic, write_text_atomic  # noqa: E402


def test_text_and_json_are_written_and_folders_created(tmp_path):
    target = tmp_path / "a" / "b" / "report.md"
    write_text_atomic(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    write_json_atomic(tmp_path / "x.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    text = (tmp_path / "x.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"a": [1, 2], "b": 1} and text.endswith("\n") and text.index('"a"') < text.index('"b"')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "x.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")

    class FailsHalfway:
        def savefig(self, path, dpi):
            with open(path, "wb") as handle:
                handle.write(b"partial")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_figure_atomic(FailsHalfway(), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    with pytest.raises(TypeError):
        write_json_atomic(target, {"step": object()})
    assert target.read_bytes() == b"old"


def test_figures_are_saved_in_the_format_of_the_suffix(tmp_path):
    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    save_figure_atomic(figure, tmp_path / "plot.png")
    save_figure_atomic(figure, tmp_path / "plot.svg")
    plt.close(figure)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "plot.svg").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "plot.svg"]


def test_read_json_store_starts_empty_on_missing_or_unreadable_files(tmp_path):
    path = tmp_path / "store.json"
    assert read_json_store(path) == {}
    write_json_atomic(path, {"a": 1})
    assert read_json_store(path) == {"a": 1}
    path.write_text('{"a": 1', encoding="utf-8")  # cut short
    assert read_json_store(path) == {}
    path.write_text("[1, 2]", encoding="utf-8")  # not an object
    assert read_json_store(path) == {}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_and_folders_follow_the_umask(tmp_path, umask):
    import os
    import stat

    import torch
    from safetensors.torch import save_file

    from rewardlab.models.atomic_dir import replace_dir_atomically

    def write(folder):
        (folder / "notes.txt").write_text("w")
        save_file({"w": torch.zeros(1)}, str(folder / "weights.safetensors"))  # safetensors writes 0600

    previous = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "report.md", "x")
        replace_dir_atomically(tmp_path / "model", write)
    finally:
        os.umask(previous)
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "report.md") == 0o666 & ~umask
    assert mode(tmp_path / "model") == 0o777 & ~umask
    assert mode(tmp_path / "model" / "notes.txt") == mode(tmp_path / "model" / "weights.safetensors") == 0o666 & ~umask
