"""Shared pretraining store and stage checkpoints (plain processes, no Ray)."""
import json
import multiprocessing as mp
import time

import torch

from rcsweep import TrialConfig
from rcsweep.fileio import sha256_file
from rcsweep.models import build_model
from rcsweep.pipeline import Progress

CFG = TrialConfig(dataset="digits", pretrain_epochs=1, compression="prune_structured", sparsity=0.5,
                  finetune="clean")


def _fake_training(seconds):
    time.sleep(seconds)
    torch.manual_seed(0)
    return build_model(CFG.model, "digits"), []


def _get(folder, who, queue):
    from rcsweep.sweep.store import PretrainStore

    model, info = PretrainStore(folder, poll_s=0.05).model(CFG, lambda: _fake_training(1.0), who=who)
    queue.put((who, info["trained_here"], float(sum(p.sum() for p in model.parameters()))))


def test_concurrent_trials_train_a_model_once_and_the_others_wait(tmp_path):
    from rcsweep.sweep.store import count_trainings, pretrain_id

    ctx = mp.get_context("fork")  # the children inherit the imports: fast
    queue = ctx.Queue()
    procs = [ctx.Process(target=_get, args=(tmp_path, f"t{i}", queue)) for i in range(3)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(trained for _, trained, _ in got) == [False, False, True]
    assert len({round(total, 4) for *_, total in got}) == 1  # everyone has the same weights
    assert count_trainings(tmp_path) == {pretrain_id(CFG): 1}
    # a different pretraining configuration is a different model; a compression change is not
    assert pretrain_id(CFG.replace(seed=1)) != pretrain_id(CFG)
    assert pretrain_id(CFG.replace(compression="quant", weight_bits=4)) == pretrain_id(CFG)


def test_a_corrupted_pretrained_model_is_set_aside_and_trained_again(tmp_path):
    from rcsweep.sweep.store import PretrainStore, count_trainings

    store = PretrainStore(tmp_path)
    _, info = store.model(CFG, lambda: _fake_training(0))
    assert info["trained_here"]
    pt = store.folder(CFG) / "model.pt"
    pt.write_bytes(pt.read_bytes()[:-100])  # truncated
    model, info = store.model(CFG, lambda: _fake_training(0))
    assert info["trained_here"] and isinstance(model, torch.nn.Module)
    assert len(list((tmp_path / "pretrained").glob("*.corrupt-*"))) == 1
    assert list(count_trainings(tmp_path).values()) == [1]


def test_a_collapsed_shared_pretraining_is_not_trained_again_by_the_trials_sharing_it(tmp_path):
    """A new user's grid: 3 trials shared a pretraining that collapsed, and each trained it again
    from scratch before collapsing the same way (training is seeded: deterministic)."""
    import pytest

    from rcsweep.errors import TrainingCollapsed
    from rcsweep.sweep.store import COLLAPSED_FILE, PretrainStore

    store = PretrainStore(tmp_path)

    def collapse():
        raise TrainingCollapsed("robust accuracy at chance after 3 epochs")

    with pytest.raises(TrainingCollapsed):
        store.model(CFG, collapse, who="t1")
    trained = []
    with pytest.raises(TrainingCollapsed, match="collapsed in trial t1; not trained again"):
        store.model(CFG, lambda: trained.append(1) or _fake_training(0), who="t2")
    assert trained == [] and (store.folder(CFG) / COLLAPSED_FILE).is_file()
    (store.folder(CFG) / COLLAPSED_FILE).unlink()  # what resume --retry-failed does
    assert store.model(CFG, lambda: _fake_training(0), who="t3")[1]["trained_here"]


def test_stage_checkpoints_keep_two_and_fall_back_past_a_bad_one(tmp_path, capsys):
    from rcsweep.sweep import checkpoints

    model = build_model(CFG.model, "digits")
    for step in (1, 2, 3):
        with torch.no_grad():
            next(model.parameters()).fill_(step)
        checkpoints.save(tmp_path, step, Progress(stage="finetuning", finetune_epochs_done=step - 1), model)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["0002-finetuning", "0003-finetuning"]
    first = next(name for name, _ in model.named_parameters())
    progress, weights, _ = checkpoints.latest(tmp_path)
    assert progress.finetune_epochs_done == 2 and float(weights[first].flatten()[0]) == 3
    (tmp_path / "checkpoints" / "0003-finetuning" / "weights.pt").write_bytes(b"garbage")
    progress, weights, path = checkpoints.latest(tmp_path)
    assert path.name == "0002-finetuning" and progress.finetune_epochs_done == 1
    assert "sha256 does not match" in capsys.readouterr().err
    # a checkpoint that carries a pickled object is refused, whatever its checksum says
    bad = tmp_path / "checkpoints" / "0002-finetuning"
    torch.save({"x": torch.zeros(1), "obj": _Evil()}, bad / "weights.pt")
    d = json.loads((bad / "progress.json").read_text())
    d["sha256"] = sha256_file(bad / "weights.pt")
    (bad / "progress.json").write_text(json.dumps(d))
    assert checkpoints.latest(tmp_path) is None
    assert "cannot load" in capsys.readouterr().err


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def _wait_for_model(folder, cpus, queue):
    from rcsweep.sweep.store import PretrainStore

    PretrainStore(folder, poll_s=0.05, cpus=cpus).model(CFG, lambda: _fake_training(0.0), who=f"waiter{cpus}")
    queue.put("done")


def test_a_shared_pretraining_borrows_the_cpus_of_the_trials_waiting_for_it(tmp_path):
    """pretrain_resources: the trainer's threads grow by the CPUs of the live waiters on its host,
    up to the cap, and fall back when they leave; without the option it keeps its own."""
    from rcsweep.sweep.store import PretrainStore

    store = PretrainStore(tmp_path, poll_s=0.05, cpus=1)
    store.cores = 64  # a large host: the count of waiters decides
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    seen = {}

    def train():
        seen["alone"] = store.threads(CFG, 1, cap=8)
        procs = [ctx.Process(target=_wait_for_model, args=(tmp_path, c, queue)) for c in (1, 2)]
        for p in procs:
            p.start()
        deadline = time.time() + 60
        while len(list(store._waiting(CFG).glob("*.json"))) < 2 and time.time() < deadline:  # both registered
            time.sleep(0.05)
        seen.update(both=store.threads(CFG, 1, cap=8), capped=store.threads(CFG, 1, cap=2.5),
                    no_option=store.threads(CFG, 1, cap=None))
        store.cores = 2
        seen["cores_2"] = store.threads(CFG, 1, cap=8)
        store.cores = 64
        procs[0].kill()  # a waiter that died lends nothing
        procs[0].join(timeout=30)
        seen["one_died"] = store.threads(CFG, 1, cap=8)
        seen["procs"] = procs
        return _fake_training(0.0)

    store.model(CFG, train, who="trainer")
    assert queue.get(timeout=60) == "done"  # the live waiter got the model and left
    seen["procs"][1].join(timeout=30)
    assert seen["alone"] == 1 and seen["both"] == 4 and seen["capped"] == 2 and seen["no_option"] == 1
    assert seen["cores_2"] == 2  # never more threads than the host's cores
    assert seen["one_died"] == 3
    assert store.threads(CFG, 1, cap=8) == 1  # nobody waits any more
