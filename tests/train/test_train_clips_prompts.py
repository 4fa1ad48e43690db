import numpy as np
import pytest
import torch

from medmem.train.clips import ShardedSampler, build_pool, make_groups, sample_clip
from medmem.train.data import prepare_case
from medmem.train.prompts import box_points, corrective_point, first_click, initial_prompts, plan_prompts

from train_helpers import case_2d, case_3d, disk


def _vol(depth=10, present=range(2, 8)):
    c = case_3d(0, depth=depth)
    lab = np.zeros_like(c.label)
    for z in present:
        lab[z][disk(48, 48, 24, 24, 8)] = 1
    c.label = lab
    return prepare_case(c, 32)


def test_sample_clip_windows():
    pc = _vol()
    assert list(pc.objects[1]) == list(range(2, 8))
    rng = np.random.default_rng(0)
    seen_rev = seen_fwd = False
    for _ in range(200):
        fr = sample_clip(pc, 1, 4, rng, full_prob=1.0, reverse_prob=0.5)
        assert len(fr) == 4 and all(abs(a - b) == 1 for a, b in zip(fr, fr[1:]))
        assert all(2 <= z <= 7 for z in fr)           # every frame contains the object
        seen_rev |= fr[0] > fr[1]
        seen_fwd |= fr[0] < fr[1]
    assert seen_rev and seen_fwd
    for _ in range(100):                                # no full window of 8: first frame still has it
        fr = sample_clip(pc, 1, 8, rng, full_prob=1.0)
        assert len(fr) == 8 and 2 <= fr[0] <= 7
    assert len(sample_clip(pc, 1, 50, rng)) == 8      # longest window starting/ending on the object
    assert len(sample_clip(_vol(present=range(0, 10)), 1, 50, rng)) == 10  # no longer than the volume
    assert sample_clip(prepare_case(case_2d(0), 32), 1, 8, rng) == [0]


def test_sample_clip_may_run_past_the_object():
    """full_prob < 1: some clips leave the object (the object-score head's absent frames); the first frame
    always contains it."""
    pc = _vol()
    rng = np.random.default_rng(0)
    clips = [sample_clip(pc, 1, 4, rng, full_prob=0.0) for _ in range(200)]
    assert all(2 <= fr[0] <= 7 for fr in clips)
    assert any(not all(2 <= z <= 7 for z in fr) for fr in clips)


def test_sharded_sampler_disjoint_and_complete():
    n, world = 10, 3
    samplers = [ShardedSampler(n, world, r, seed=5) for r in range(world)]
    per = samplers[0].per_rank
    assert per == 4
    epoch0 = [s.indices(0, per) for s in samplers]
    flat = sum(epoch0, [])
    assert set(flat) == set(range(n)) and len(flat) == world * per   # padded by wrapping, as DistributedSampler
    assert len(flat) - len(set(flat)) == world * per - n              # only the padding repeats
    even = [ShardedSampler(12, 3, r, seed=5).indices(0, 4) for r in range(3)]
    assert sorted(sum(even, [])) == list(range(12))                   # disjoint shards
    assert samplers[1].indices(2, 5) == samplers[1].indices(0, 7)[2:]  # a pure function of the position
    assert samplers[0].indices(per, per) != samplers[0].indices(0, per)  # reshuffled next epoch
    with pytest.raises(ValueError):
        ShardedSampler(0)


def test_box_and_first_click():
    m = np.zeros((20, 30), bool)
    m[5:9, 10:20] = True
    rng = np.random.default_rng(0)
    pts, lab = box_points(m, 0.0, rng)
    assert pts.tolist() == [[10, 5], [19, 8]] and lab.tolist() == [2, 3]
    for _ in range(20):
        pts, _ = box_points(m, 0.2, rng)
        assert 0 <= pts[0, 0] <= pts[1, 0] < 30 and 0 <= pts[0, 1] <= pts[1, 1] < 20
        c, lab = first_click(m, rng)
        assert lab.tolist() == [1] and m[int(c[0, 1]), int(c[0, 0])]


def test_corrective_points():
    rng = np.random.default_rng(0)
    gt = np.zeros((16, 16), bool)
    gt[4:12, 4:12] = True
    under = gt.copy()
    under[4:12, 8:12] = False                           # false negatives only → positive clicks inside them
    for mode in ("random", "center"):
        for _ in range(10):
            c, lab = corrective_point(under, gt, rng, mode)
            x, y = int(c[0, 0]), int(c[0, 1])
            assert lab.tolist() == [1] and gt[y, x] and not under[y, x]
    over = np.zeros_like(gt)
    over[0:16, 0:16] = True                             # false positives only → negative clicks outside gt
    for _ in range(10):
        c, lab = corrective_point(over, gt, rng, "random")
        assert lab.tolist() == [0] and not gt[int(c[0, 1]), int(c[0, 0])]
    c, lab = corrective_point(gt, gt, rng, "random")    # no error: a pixel labelled by the ground truth
    assert lab[0] == int(gt[int(c[0, 1]), int(c[0, 0])])
    # drawn from the ground truth (as if nothing were predicted): always positive inside gt
    c, lab = corrective_point(gt, gt, rng, "random", prob_from_gt=1.0)
    assert lab.tolist() == [1] and gt[int(c[0, 1]), int(c[0, 0])]


def test_plan_prompts():
    rng = np.random.default_rng(1)
    gt = np.zeros((2, 6, 8, 8), bool)
    gt[:, :4, 2:6, 2:6] = True                           # frames 4, 5 empty
    kinds = set()
    for _ in range(100):
        p = plan_prompts(gt, rng, prob_box=0.5, prob_mask=0.2, max_cond_frames=3, correction_iters=2,
                         max_extra_correct_frames=1)
        kinds.add(p.kind)
        assert p.cond_frames[0] == 0 and len(p.cond_frames) <= 3
        assert all(f < 4 for f in p.cond_frames)        # prompted frames contain every object
        if p.kind == "mask":
            assert p.correct_frames == []
        else:
            assert p.correct_frames[:len(p.cond_frames)] == p.cond_frames
            assert len(p.correct_frames) <= len(p.cond_frames) + 1
        pr = initial_prompts(p, gt, rng, 0.1, torch.device("cpu"))
        assert set(pr) == set(p.cond_frames)
    assert kinds == {"box", "click", "mask"}
    single = np.ones((1, 1, 8, 8), bool)
    for _ in range(30):                                  # 2D: never a mask prompt (it would be the output)
        assert plan_prompts(single, rng, prob_box=0.5, prob_mask=1.0, max_cond_frames=2, correction_iters=1,
                            max_extra_correct_frames=1).kind != "mask"


def test_make_groups_batches_by_clip_length():
    cases = [prepare_case(case_2d(0), 32), prepare_case(case_3d(0, depth=5), 32), prepare_case(case_2d(1), 32)]
    pool = build_pool(cases)
    assert [(r.case, r.obj) for r in pool] == [(0, 1), (1, 1), (2, 1)]
    groups = make_groups(cases, pool, 3, np.random.default_rng(0), torch.device("cpu"))
    assert [(g.batch, g.length) for g in groups] == [(2, 1), (1, 3)]
    g = groups[1]
    assert g.images.shape == (1, 3, 3, 32, 32) and g.gt.shape == (1, 3, 1, 32, 32)
    assert g.gt_np[:, 0].any()                           # the prompted frame contains the object
    assert torch.equal(g.gt[:, :, 0].bool(), torch.from_numpy(g.gt_np))
