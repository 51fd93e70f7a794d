"""The rung decision of early stopping (issue 16) on synthetic points: dominated trials stopped,
the first front kept, the margin respected, a rung too small to decide waits, chance accuracy
stopped as degenerate, ties broken by crowding then arrival."""
import pytest

from rcsweep.rungs import RungPoint, decide, dominates, fronts, group_key, rung_values

OBJ = (("robust_acc", "max"), ("model_bits", "min"))
N = 500


def pt(tid, acc, bits, n=N, clean=0.9):
    return RungPoint(tid, {"robust_acc": acc, "model_bits": bits}, n, clean)


def run(points, tid, eta=3, margin_se=2.0):
    return decide(points, tid, OBJ, eta=eta, margin_se=margin_se, num_classes=10)


def test_a_clearly_dominated_trial_is_stopped_and_the_front_kept():
    pts = [pt("a", 0.60, 1e5), pt("b", 0.50, 1e4), pt("c", 0.40, 1e3), pt("bad", 0.05, 2e5)]
    d = run(pts, "bad")
    assert d.stop and d.front == 2 and "below the top 1" in d.reason
    for tid in "abc":  # the first front: every point continues, though the quota is 1 of 4
        assert not run(pts, tid).stop and run(pts, tid).front == 1


def test_a_rung_with_fewer_than_eta_plus_one_points_waits():
    pts = [pt("a", 0.60, 1e5), pt("b", 0.55, 1e4), pt("bad", 0.01, 2e5)]
    d = run(pts, "bad")  # 3 points < eta + 1 = 4
    assert not d.stop and "3 of the 4 points" in d.reason
    assert run(pts + [pt("d", 0.3, 1e4)], "bad").stop  # the fourth point lets it decide
    assert run(pts, "bad", eta=2).stop  # eta 2: 3 points decide


def test_the_margin_protects_a_point_within_noise():
    """bad is smaller-accuracy and larger: dominated without margin; with 2 standard errors of the
    difference on 100 images (~0.09 at p=0.5), a 0.05 gap is noise, a 0.3 gap is not."""
    near = [pt("a", 0.55, 1e4, n=100), pt("b", 0.9, 1e6, n=100), pt("c", 0.2, 1e2, n=100),
            pt("x", 0.50, 2e4, n=100)]
    assert dominates(near[0], near[3], OBJ, 0.0) and not dominates(near[0], near[3], OBJ, 2.0)
    assert run(near, "x", margin_se=0.0).stop
    assert not run(near, "x", margin_se=2.0).stop and run(near, "x", margin_se=2.0).front == 1
    far = near[:3] + [pt("x", 0.25, 2e4, n=100)]
    assert run(far, "x", margin_se=2.0).stop
    # the margin also shrinks with more images: the same 0.05 gap on 5000 images is beyond it
    big = [RungPoint(p.trial_id, p.values, 5000, 0.9) for p in near]
    assert run(big, "x", margin_se=2.0).stop


def test_equal_sizes_never_hide_behind_the_margin_of_exact_objectives():
    """Sizes take no margin: a point better in size and tied in accuracy within noise is not
    dominated (accuracy within the margin), but a point larger AND clearly less accurate is."""
    a, b = pt("a", 0.5, 1e4), pt("b", 0.5, 2e4)
    assert not dominates(a, b, OBJ, 2.0) and dominates(a, b, OBJ, 0.0)
    assert not dominates(a, a, OBJ, 0.0)  # equal points do not dominate each other


def test_a_trial_at_chance_is_stopped_at_once_even_in_a_small_rung():
    pts = [pt("a", 0.6, 1e5), pt("chance", 0.0, 1e2, clean=0.11)]
    d = run(pts, "chance")
    assert d.stop and d.reason.startswith("degenerate: clean accuracy 0.110 within the 95% interval of chance")
    assert not run(pts, "a").stop


def test_the_quota_is_one_eta_th_of_the_points_and_ties_go_by_crowding_then_arrival():
    """9 points, eta 3: 3 continue. The first front is 'a' alone; the second front {b, c, d} (b, d its
    ends, c between them) straddles the cut: its two ends (crowding inf) are kept, in arrival
    order; c is not."""
    pts = [pt("a", 0.9, 1e2), pt("b", 0.8, 1e2 * 1.5), pt("c", 0.7, 1e2 * 1.4), pt("d", 0.6, 1e2 * 1.3)]
    pts += [pt(f"z{i}", 0.1, 1e6) for i in range(5)]
    assert [sorted(p.trial_id for p in (pts[i] for i in f)) for f in fronts(pts, OBJ, 0.0)][:2] == [["a"], ["b", "c", "d"]]
    kept = [p.trial_id for p in pts if not run(pts, p.trial_id, margin_se=0.0).stop]
    assert kept == ["a", "b", "d"]


def test_unknown_trial_and_group_key_and_rung_values():
    with pytest.raises(ValueError, match="no point"):
        run([pt("a", 0.5, 1)], "b")
    three, nine = {"finetune": "clean", "finetune_epochs": 3}, {"finetune": "clean", "finetune_epochs": 9}
    assert group_key(three) != group_key(nine)  # epoch 1 of a 3-epoch cosine schedule is not epoch 1 of 9
    # fine-tuning methods share a rung: the same compressed model at rung 0, the same schedule after
    assert group_key(three) == group_key({**three, "finetune": "adversarial"})
    assert group_key({"finetune": "none", "finetune_epochs": None}) == "none/0"
    pruned = {**three, "compression": "prune_structured"}  # damaged before fine-tuning, unlike quantization
    assert group_key(pruned) != group_key({**three, "compression": "quant"})
    assert group_key(pruned) == "prune_structured/3"
    values = rung_values(OBJ + (("clean_acc", "max"),), {"clean_acc": 0.8, "robust_acc": 0.3}, {"model_bits": 1e4})
    assert values == {"robust_acc": 0.3, "model_bits": 1e4, "clean_acc": 0.8}


def test_the_stopped_summary_counts_in_words():
    import pandas as pd

    from rcsweep.rungs import stopped_summary

    one = pd.DataFrame({"status": ["early_stopped", "finished"], "screen_rung": [0, None], "finetune_epochs": [1, 1],
                        "flops_screen": [5.0, 5.0]})
    assert stopped_summary(one) == ("1 stopped early (rung 0: 1): 1 fine-tuning epoch and 1 final evaluation skipped; "
                                    "screening cost 10 FLOPs")
    assert stopped_summary(one.assign(status="finished")) == ""
