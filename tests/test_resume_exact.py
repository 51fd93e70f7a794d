"""A trial resumed from a fine-tuning checkpoint ends exactly as one that was never interrupted: the
checkpoint holds the optimiser's momentum and torch's random state (the attacks' random starts)
beside the weights. Found by a new user: a sweep killed mid-fine-tuning and resumed gave robust
accuracy 0.5083 where the same configuration uninterrupted gave 0.5166 (and another flag)."""
import copy

import pytest
import torch

from rcsweep import TrialConfig
from rcsweep.pipeline import Progress, continue_trial, load_trial_data, pretrain
from rcsweep.sweep import checkpoints

CFG = TrialConfig(dataset="digits", pretrain_epochs=4, train_size=400, val_size=100, test_size=60, batch_size=16, lr=0.1,
                  compression="prune_structured", sparsity=0.5, finetune="adversarial", finetune_epochs=3,
                  eps_eval=0.2, attack_steps=3, eval_steps=5, eval_restarts=1)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def setup():
    data = load_trial_data(CFG)
    dense, _ = pretrain(CFG, data, "cpu")
    return data, dense


def _uninterrupted(data, dense):
    model, _, record = continue_trial(copy.deepcopy(dense), CFG, data, "cpu", Progress())
    return model, record["metrics"]


def _killed_after_epoch(data, dense, folder, epoch: int):
    def on_stage(p, m):
        checkpoints.save(folder, 1 + p.finetune_epochs_done, p, m)
        if p.finetune_epochs_done == epoch:
            raise Killed()

    with pytest.raises(Killed):
        continue_trial(copy.deepcopy(dense), CFG, data, "cpu", Progress(), on_stage=on_stage)
    torch.manual_seed(12345)  # whatever the new process's random state, the checkpoint's is used
    return checkpoints.latest(folder)


def test_a_trial_resumed_after_a_fine_tuning_epoch_ends_as_an_uninterrupted_one(setup, tmp_path):
    data, dense = setup
    plain, metrics = _uninterrupted(data, dense)
    progress, weights, path = _killed_after_epoch(data, dense, tmp_path, epoch=1)
    assert progress.finetune_epochs_done == 1 and (path / checkpoints.TRAIN_STATE).is_file()
    assert progress.train_state["optimizer"]["state"]  # momentum buffers were saved
    resumed, _, record = continue_trial(copy.deepcopy(dense), CFG, data, "cpu", progress, weights=weights)
    for a, b in zip(plain.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    for k in ("clean_acc", "robust_acc"):
        assert record["metrics"][k] == metrics[k]


def test_without_the_training_state_the_resumed_trial_drifts(setup, tmp_path):
    # what the state is for: a checkpoint from before it existed (weights only) resumes with momentum
    # restarted and other random starts, and ends with other weights
    data, dense = setup
    plain, _ = _uninterrupted(data, dense)
    progress, weights, _ = _killed_after_epoch(data, dense, tmp_path, epoch=1)
    progress.train_state = None
    resumed, _, _ = continue_trial(copy.deepcopy(dense), CFG, data, "cpu", progress, weights=weights)
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), resumed.state_dict().values()))


def test_an_altered_training_state_is_refused_and_the_checkpoint_before_it_used(setup, tmp_path):
    data, dense = setup
    _killed_after_epoch(data, dense, tmp_path, epoch=2)
    newest = sorted((tmp_path / "checkpoints").iterdir())[-1]
    (newest / checkpoints.TRAIN_STATE).write_bytes(b"not a training state")
    progress, _, path = checkpoints.latest(tmp_path)
    assert path != newest and progress.finetune_epochs_done == 1 and progress.train_state is not None
