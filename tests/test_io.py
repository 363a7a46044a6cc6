"""Atomic writes (inferlab.io): a reader never sees a half-written file or model folder."""

import pytest

from inferlab.io import atomic_dir, write_json


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "models" / "m"
    with atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("{}")
        assert not out.exists()  # nothing under the final name while it is being written
    assert (out / "config.json").read_text() == "{}"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "config.json").write_text("half")
            raise RuntimeError("killed mid-build")
    assert (out / "config.json").read_text() == "{}"  # the old model stays whole
    assert [p.name for p in out.parent.iterdir()] == ["m"]  # and no temporary folder is left
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["weights"]  # replaced, not merged


def test_write_json_failure_leaves_no_file(tmp_path):
    f = tmp_path / "rec.json"
    with pytest.raises(TypeError):
        write_json(f, {"x": object.__new__(type("Unserialisable", (), {"__str__": None}))})
    assert list(tmp_path.iterdir()) == []
