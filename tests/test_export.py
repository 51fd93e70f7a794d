"""``rcsweep export``: a dense, a channel-pruned, an unstructured-pruned and a w8a8 (simulated) digits
model written as ONNX and torch.export files, loaded in a Python that cannot import rcsweep, and
agreeing with rcsweep's own model; cards whose sizes match the files; flagged trials refused without
--force; bad input refused with one line and nothing written; a disagreeing file fails the export."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from compress_helpers import config, digits_model

import rcsweep
from rcsweep import load_model
from rcsweep.attacks import PGD, threat_model
from rcsweep.cli import main
from rcsweep.compress import compress_
from rcsweep.compress import export as backends
from rcsweep.metrics import efficiency
from rcsweep.pipeline import save_trial
from rcsweep.results import add_flag, record_to_row, upsert_rows
from rcsweep.trial_status import derive_flags

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

EVAL = dict(test_size=100, eps_eval=0.1, eval_steps=5, eval_restarts=1)
KINDS = {"dense": {}, "struct": dict(compression="prune_structured", sparsity=0.5),
         "unstr": dict(compression="prune", sparsity=0.6),
         "w8a8": dict(compression="quant", weight_bits=8, act_bits=8)}


def make_trial(folder, tid: str, **kw) -> dict:
    """A finished trial folder (model.pt, model.json, record.json) of the shared trained digits model,
    compressed as ``kw`` says; evaluated cheaply (PGD, no masking checks: only export reads it)."""
    data, model = digits_model()
    dense_params = sum(p.numel() for p in model.parameters())
    cfg = config(**EVAL, **kw)
    comp = compress_(model, cfg, calib=data.val)
    model.eval()
    x, y = data.test[0][:100], data.test[1][:100]
    x_adv = PGD(threat_model("linf", cfg.eps_eval), steps=cfg.eval_steps)(model, x, y)
    with torch.no_grad():
        clean, robust = [(model(v).argmax(1) == y).float().mean().item() for v in (x, x_adv)]
    metrics = {"clean_acc": clean, "robust_acc": robust, "majority_pred_frac": 0.1,
               **efficiency(model, cfg, (1, 8, 8), dense_params, latency=False)}
    record = derive_flags({"params": cfg.to_flat(), "metrics": metrics,
                           "evaluation": {"n_test": 100, "attack": "PGD-5", "num_classes": 10}}, 10)
    save_trial(folder / "trials" / tid, model, cfg, comp, record)
    return record_to_row(tid, "finished", record)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export_sweep")
    rows = [make_trial(folder, tid, **kw) for tid, kw in KINDS.items()]
    for tid, flag in (("sus", "suspect"), ("deg", "degenerate")):
        rows.append(add_flag(make_trial(folder, tid), flag, "set by the test"))
    upsert_rows(folder, rows)
    return folder


@pytest.fixture(scope="module")
def exported(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("shipped") / "out"
    assert main(["export", str(sweep), "--trials", *KINDS, "--format", "onnx", "pt2", "--out", str(out)]) == 0
    return out


def card(out, tid) -> dict:
    return json.loads((out / tid / "model_card.json").read_text())


LOADER = r"""
import json, sys
sys.modules["rcsweep"] = sys.modules["analysis"] = None  # importing either now raises ImportError
import numpy as np
import onnxruntime as ort
import torch
out = {}
for tid in sys.argv[1:]:
    for name in ("x", "x_adv"):
        x = np.load(f"{tid}_{name}.npy")
        s = ort.InferenceSession(f"{tid}/model.onnx", providers=["CPUExecutionProvider"])
        out[f"{tid} onnx {name}"] = s.run(["logits"], {"images": x})[0].argmax(1).tolist()
        m = torch.export.load(f"{tid}/model.pt2").module()
        out[f"{tid} pt2 {name}"] = m(torch.from_numpy(x)).argmax(1).tolist()
assert not [m for m in sys.modules if m.split(".")[0] in ("rcsweep", "analysis") and sys.modules[m] is not None]
print(json.dumps(out))
"""


def test_files_load_without_rcsweep_and_agree_with_its_model(sweep, exported, tmp_path):
    from rcsweep.data import load_dataset

    x, y = load_dataset("digits", "test", test_size=100)
    ref = {}
    for tid in KINDS:
        model = load_model(sweep / "trials" / tid)
        torch.manual_seed(1)  # another seed than export's own check
        x_adv = PGD(threat_model("linf", 0.1), steps=5)(model, x, y)
        with torch.no_grad():
            ref[tid] = {"x": model(x).argmax(1), "x_adv": model(x_adv).argmax(1)}
        for name, v in (("x", x), ("x_adv", x_adv)):
            np.save(exported / f"{tid}_{name}.npy", v.numpy().astype(np.float32))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no PYTHONPATH; -I: no user site, no cwd on sys.path
    done = subprocess.run([sys.executable, "-I", "-c", LOADER, *KINDS], cwd=exported, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    for tid in KINDS:
        for fmt in ("onnx", "pt2"):
            pred, pred_adv = (torch.tensor(got[f"{tid} {fmt} {name}"]) for name in ("x", "x_adv"))
            assert (pred == ref[tid]["x"]).float().mean() >= 0.995, (tid, fmt)
            robust, robust_ref = ((p == y).float().mean().item() for p in (pred_adv, ref[tid]["x_adv"]))
            assert robust - robust_ref <= 0.01 + 1e-6, (tid, fmt, robust, robust_ref)
        for name, f in card(exported, tid)["files"].items():  # export's own check, recorded in the card
            assert f["agreement"]["passed"] and f["agreement"]["agreement"] >= 0.995, (tid, name)
            assert f["agreement"]["examples"] == 100


def test_cards_describe_the_files_and_their_sizes(sweep, exported):
    import onnx

    sizes = {}
    for tid in KINDS:
        c = card(exported, tid)
        assert c["input"]["range"] == [0.0, 1.0] and c["input"]["shape"] == ["N", 1, 8, 8]
        assert c["input"]["normalisation"]["inside_model"] and c["threat_model"] == {
            "norm": "linf", "eps": 0.1, "units": "pixels of [0, 1] images"}
        assert c["accuracy"]["clean_acc"] > 0.8 and c["accuracy"]["robust_acc"] is not None
        assert c["rcsweep_version"] and c["parameters"]["compression"] == KINDS[tid].get("compression", "none")
        params = c["size"]["params"]
        for name in ("model.onnx", "model.pt2"):
            f = c["files"][name]
            assert f["bytes"] == (exported / tid / name).stat().st_size
            assert not [t for t in f["tensors"] if "weight_orig" in t or "weight_mask" in t], (tid, name)
            # every parameter stored once, as float32: 4 bytes each, plus a few buffers and the graph
            assert params <= f["tensor_elements"]["float32"] <= params + 100, (tid, name)
            assert 4 * params <= f["bytes"] <= 4 * params + 100_000, (tid, name, f["bytes"])
            sizes[tid, name] = f["bytes"]
    assert card(exported, "unstr")["size"]["params_nonzero"] < 0.6 * card(exported, "dense")["size"]["params"]
    names = {i.name for i in onnx.load(str(exported / "unstr" / "model.onnx")).graph.initializer}
    assert "net.0.weight" in names and not any("orig" in n or "mask" in n for n in names)
    for name in ("model.onnx", "model.pt2"):
        assert sizes["struct", name] < sizes["dense", name]
        assert sizes["unstr", name] <= 1.02 * sizes["dense", name]  # zeros stored as plain weights, no mask
        tensor_bytes = {tid: card(exported, tid)["files"][name]["tensor_bytes"] for tid in KINDS}
        assert tensor_bytes["struct"] < 0.3 * tensor_bytes["dense"] and tensor_bytes["unstr"] == tensor_bytes["dense"]
        for tid in KINDS:  # no file paths of the machine that exported (the exporters' stack traces)
            assert str(Path(rcsweep.__file__).parent).encode() not in (exported / tid / name).read_bytes()


def test_quantized_model_files_hold_exactly_the_simulated_grid(sweep, exported):
    import onnx
    from onnx import numpy_helper

    c = card(exported, "w8a8")
    assert c["compression"]["weight_bits"] == 8 and c["compression"]["act_bits"] == 8
    assert c["files"]["model.onnx"]["weights"] == "float32 holding 8-bit grid values (per channel)"
    assert "8-bit grid" in c["files"]["model.onnx"]["activations"]
    model = load_model(sweep / "trials" / "w8a8")
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(exported / "w8a8" / "model.onnx")).graph.initializer}
    conv = model.net[0]
    assert np.array_equal(weights["net.0.layer.weight"], conv.weight_quant(conv.weight).detach().numpy())
    # the integer file: int8 codes for every weight, uint8 activation codes; written because it agreed
    qdq = c["files"]["model.qdq.onnx"]
    assert qdq["weights"].startswith("int8 codes") and qdq["activations"].startswith("uint8")
    assert qdq["tensor_elements"]["int8"] >= c["size"]["params"] - 200 and qdq["agreement"]["passed"]
    assert qdq["bytes"] < 0.6 * c["files"]["model.onnx"]["bytes"]
    for tid in ("dense", "struct", "unstr"):
        assert "model.qdq.onnx" not in card(exported, tid)["files"]
        assert card(exported, tid)["files"]["model.onnx"]["weights"] == "float32"


def test_flagged_trials_need_force_and_an_earlier_export_is_replaced(sweep, tmp_path, capsys):
    out = tmp_path / "flagged"
    for tid, flag in (("sus", "suspect"), ("deg", "degenerate")):
        rc, text = run_cli(["export", sweep, "--trials", "dense", tid, "--format", "state_dict", "--out", out], capsys)
        assert rc == 2 and f"flagged {flag}: set by the test" in text.err and "--force" in text.err
        assert len(text.err.strip().splitlines()) == 1 and not out.exists()
    rc, _ = run_cli(["export", sweep, "--trials", "sus", "--format", "state_dict", "--out", out, "--force"], capsys)
    assert rc == 0 and card(out, "sus")["forced"] and "suspect" in card(out, "sus")["flags"]
    # state_dict: rcsweep's own format, masks baked, loads with load_model
    rc, _ = run_cli(["export", sweep, "--trials", "unstr", "--format", "state_dict", "--out", out], capsys)
    assert rc == 0 and not (out / "sus").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["flagged"]
    state = torch.load(out / "unstr" / "model.pt", weights_only=True)
    assert "net.0.weight" in state and not any("orig" in k or "mask" in k for k in state)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(load_model(out / "unstr")(x), load_model(sweep / "trials" / "unstr")(x))


@pytest.mark.parametrize("case", ["format", "other_folder", "trial", "sweep"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, sweep, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["export", sweep, "--trials", "dense", "--format", "pt2", "--out", out]
    if case == "format":
        argv[argv.index("pt2")] = "tflite"
    elif case == "other_folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "trial":
        argv[argv.index("dense")] = "nope"
    else:
        argv[1] = tmp_path / "no_such_sweep"
    rc, text = run_cli(argv, capsys)
    needle = {"format": "invalid choice: 'tflite'", "other_folder": "is not an earlier rcsweep export",
              "trial": "trial 'nope' is not in", "sweep": "no_such_sweep is not a folder"}[case]
    assert rc == 2 and needle in text.err and len(text.err.strip().splitlines()) == 1, text.err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out"] if case == "other_folder" else [])
    if case == "other_folder":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_disagreeing_file_fails_the_export(sweep, tmp_path, capsys, monkeypatch):
    real = backends.pt2_runner
    monkeypatch.setattr(backends, "pt2_runner", lambda path: (lambda x: real(path)(x).roll(1, dims=1)))
    rc, text = run_cli(["export", sweep, "--trials", "dense", "--format", "pt2", "--out", tmp_path / "out"], capsys)
    assert rc == 1 and "trial 'dense': model.pt2 disagrees with rcsweep's model" in text.err
    assert "same prediction on" in text.err and list(tmp_path.iterdir()) == []


def test_an_integer_file_that_disagrees_is_left_out_and_the_card_says_why(sweep, tmp_path, capsys, monkeypatch):
    real = backends.onnx_runner

    def runner(path):  # the integer file predicts the next class: rcsweep's model is not what it runs
        run = real(path)
        return (lambda x: run(x).roll(1, dims=1)) if path.name == "model.qdq.onnx" else run
    monkeypatch.setattr(backends, "onnx_runner", runner)
    out = tmp_path / "out"
    rc, text = run_cli(["export", sweep, "--trials", "w8a8", "--out", out], capsys)
    assert rc == 0 and "model.qdq.onnx not written: same prediction on 0.0%" in text.out
    c = card(out, "w8a8")
    assert list(c["files"]) == ["model.onnx"] and not (out / "w8a8" / "model.qdq.onnx").exists()
    assert "quantizes the float bias to int32" in c["files_not_written"]["model.qdq.onnx"]
