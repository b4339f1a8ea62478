"""Outputs replace only what bccd-yolo wrote: the user's files survive every command (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_voc, tree_digest

from bccd_yolo.cli import main
from bccd_yolo.core.errors import InputError
from bccd_yolo.core.fsutil import MARKER, staged_dir


def write(folder: Path, **files: str) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)


def test_a_folder_of_the_users_files_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write(out, **{"notes.txt": "mine"})
    with pytest.raises(InputError, match="did not write.*pass overwrite"):
        with staged_dir(out) as tmp:
            write(tmp, **{"a.txt": "new"})
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def test_overwrite_replaces_only_this_commands_outputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write(out, **{"notes.txt": "mine", "a.txt": "old a"})
    with staged_dir(out, overwrite=True) as tmp:
        write(tmp, **{"a.txt": "new a", "b.txt": "b"})
    assert {p.name: p.read_text() for p in out.iterdir() if p.name != MARKER} == {
        "notes.txt": "mine", "a.txt": "new a", "b.txt": "b"}
    # a second run, no --overwrite needed (the marker says these are ours): b.txt is gone, notes.txt stays
    with staged_dir(out) as tmp:
        write(tmp, **{"a.txt": "a3"})
    assert sorted(p.name for p in out.iterdir() if p.name != MARKER) == ["a.txt", "notes.txt"]


def test_a_file_added_to_our_output_folder_survives_the_next_run(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as tmp:
        write(tmp, **{"a.txt": "1"})
    write(out, **{"my-notes.txt": "keep me"})
    with staged_dir(out) as tmp:
        write(tmp, **{"a.txt": "2"})
    assert (out / "my-notes.txt").read_text() == "keep me" and (out / "a.txt").read_text() == "2"


def test_an_error_leaves_the_previous_output_and_no_temporary_folder(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as tmp:
        write(tmp, **{"a.txt": "1"})
    before = tree_digest(out)
    with pytest.raises(RuntimeError):
        with staged_dir(out) as tmp:
            write(tmp, **{"a.txt": "half"})
            raise RuntimeError("boom")
    assert tree_digest(out) == before and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_output_folders_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with staged_dir(tmp_path / "out") as tmp:
            write(tmp, **{"a.txt": "1"})
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_a_file_where_a_folder_is_expected_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file of mine")
    with pytest.raises(InputError, match="not a folder"):
        with staged_dir(out) as tmp:
            write(tmp, **{"a.txt": "1"})
    assert out.read_text() == "a file of mine" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("where", ["same", "inside", "containing"])
def test_convert_refuses_an_output_that_overlaps_its_input(where, tmp_path, capsys):
    src = make_voc(tmp_path / "data" / "voc")
    before = tree_digest(tmp_path / "data")
    out = {"same": src, "inside": src / "yolo", "containing": tmp_path / "data"}[where]
    code = main(["convert", "--source", str(src), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "overlaps the input" in err and len(err.splitlines()) == 1, err
    assert tree_digest(tmp_path / "data") == before


def test_convert_into_a_folder_of_user_files_keeps_them(tmp_path, capsys):
    src = make_voc(tmp_path / "voc")
    out = tmp_path / "mine"
    out.mkdir()
    write(out, **{"thesis.docx": "years of work"})
    assert main(["convert", "--source", str(src), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "--source", str(src), "--out", str(out), "--overwrite"]) == 0
    assert (out / "thesis.docx").read_text() == "years of work" and (out / "data.yaml").is_file()


def test_report_into_the_runs_folder_is_refused_and_the_runs_survive(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "scratch" / "weights").mkdir(parents=True)
    write(runs / "scratch", **{"results.csv": "epoch,time\n", "timing.json": "{}"})
    (runs / "scratch" / "weights" / "best.pt").write_bytes(b"weights of a long run")
    before = tree_digest(runs)
    code = main(["report", "--runs", str(runs / "scratch"), "--out", str(runs), "--data", "nowhere/data.yaml"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "overlaps the input" in err, err
    assert tree_digest(runs) == before


def test_sigterm_during_a_write_removes_the_temporary_file_and_exits_143(tmp_path, monkeypatch, capsys):
    """What `timeout`, schedulers and `docker stop` send arrives mid-write: treated like Ctrl-C."""
    import signal

    import bccd_yolo.cli as cli
    from bccd_yolo.core.fsutil import atomic_save

    def save(tmp: str) -> None:
        Path(tmp).write_bytes(b"half an overlay")
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cli, "cmd_stages", lambda args: atomic_save(tmp_path / "overlay.tif", save) and 0)
    assert cli.main(["stages"]) == 143
    assert "terminated" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is not cli._terminate  # the handler is not left behind
