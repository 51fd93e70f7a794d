"""Model files: round trip, checksum, pickle refusal, truncation, mismatch."""
import json
import pickle
import shutil

import pytest
import torch

from rcsweep import TrialConfig, load_model, save_model
from rcsweep.errors import CheckpointError
from rcsweep.models import build_model


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    cfg = TrialConfig()
    m = build_model(cfg.model, cfg.dataset)
    save_model(m, tmp_path / "m", cfg)
    return m, tmp_path / "m"


def test_round_trip_identical_outputs_and_plain_module(saved):
    m, folder = saved
    x = torch.rand(4, 1, 8, 8)
    loaded = load_model(folder)
    assert not loaded.training
    assert torch.equal(m.eval()(x), loaded(x))
    meta = json.loads((folder / "model.json").read_text())
    assert meta["schema_version"] == 1 and meta["versions"]["torch"] == torch.__version__
    assert load_model(folder / "model.pt") is not None and load_model(folder / "model.json") is not None


def test_altered_file_fails_checksum(saved):
    _, folder = saved
    data = bytearray((folder / "model.pt").read_bytes())
    data[-100] ^= 0xFF
    (folder / "model.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(folder)


def test_truncated_file_fails(saved):
    _, folder = saved
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_model(folder)


class Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_pickled_object_is_refused_even_with_matching_checksum(saved, capsys):
    from rcsweep.fileio import sha256_file

    _, folder = saved
    torch.save({"x": Evil()}, folder / "model.pt")
    meta = json.loads((folder / "model.json").read_text())
    meta["sha256"] = sha256_file(folder / "model.pt")
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="safely"):
        load_model(folder)
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_wrong_architecture_and_bad_json(saved, tmp_path):
    _, folder = saved
    meta = json.loads((folder / "model.json").read_text())
    meta["config"]["width"] = 2.0
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(folder)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(folder)
    with pytest.raises(CheckpointError, match="no model"):
        load_model(tmp_path / "missing")
