import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import medmem
from medmem.checkpoint import save_weights
from medmem.memory.policies import ConfidencePolicy
from medmem.model.sam2 import SAM2Model
from medmem.train import TrainConfig, Trainer, train
from medmem.train.bank import TrainingBank
from medmem.train.data import build_dataset

from train_helpers import case_2d, case_3d, mixed_cases

FAST = dict(model="test_tiny", progress=False, save_every=0, val_cases=2)


def _log(path):
    return [json.loads(ln) for ln in open(path)]


def test_overfit_tiny_case_loss_decreases(tmp_path):
    cfg = TrainConfig(out=str(tmp_path), steps=40, batch_size=2, clip_len=1, warmup=5, lr=2e-3, grad_clip=1.0,
                      correction_iters=0, prob_box=1.0, **FAST)
    cases = [case_2d(0), case_2d(1), case_2d(0, "val")]
    res = train(cfg, cases)
    losses = [r["loss"] for r in _log(tmp_path / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.25 * np.mean(losses[:5])
    assert res.finished and res.val["dice"] > 0.8 and res.val["nsd"] > 0.8
    # artefacts: checkpoint, final weights loadable by the library, no temp files left
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.pt", "metrics.jsonl", "model.safetensors", "train_config.json"]
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 40 and set(ck) >= {"model", "optimizer", "scheduler", "rng", "train_config"}
    m = medmem.build_model(None, checkpoint=tmp_path / "model.safetensors", device="cpu")
    final = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(m.state_dict()[k], final[k]) for k in final)
    assert all(torch.equal(ck["model"][k], final[k]) for k in final)


def test_exact_resume_matches_uninterrupted_run(tmp_path):
    kw = dict(steps=6, batch_size=2, clip_len=3, warmup=2, memory="confidence", bank_threshold=0.0,
              bank_capacity=8, bank_k=2, **FAST)
    cases = mixed_cases()
    train(TrainConfig(out=str(tmp_path / "a"), **kw), cases)
    part = train(TrainConfig(out=str(tmp_path / "b"), stop_at=3, **kw), cases)
    assert part.step == 3 and not part.finished and part.weights is None
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **kw), cases, resume=True)
    assert resumed.finished and resumed.step == 6
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = _log(tmp_path / "a" / "metrics.jsonl"), _log(tmp_path / "b" / "metrics.jsonl")
    strip = lambda log: [{k: v for k, v in r.items() if k != "time"} for r in log]  # noqa: E731
    assert strip(la) == strip(lb)
    assert la[-2]["bank"] > 0  # the bank was in use
    ba = ConfidencePolicy(medmem.get_config("test_tiny"))
    ba.load(tmp_path / "a" / "bank.safetensors")
    bb = ConfidencePolicy(medmem.get_config("test_tiny"))
    bb.load(tmp_path / "b" / "bank.safetensors")
    assert ba.bank.conf == bb.bank.conf and len(ba.bank.entries) == la[-2]["bank"]


def test_frozen_parameters_do_not_change(tmp_path):
    cfg = TrainConfig(out=str(tmp_path), steps=2, batch_size=2, clip_len=2, warmup=1, lr=1e-3,
                      freeze=("image_encoder", "prompt_encoder"), **FAST)
    tr = Trainer(cfg, mixed_cases())
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.fit()
    after = tr.model.state_dict()
    frozen = [k for k in before if k.startswith(("image_encoder.", "sam_prompt_encoder."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    changed = [k for k in before if k.startswith("sam_mask_decoder.") and not torch.equal(before[k], after[k])]
    assert len(changed) > 10
    assert not any(id(p) in {id(q) for g in tr.optimizer.param_groups for q in g["params"]}
                   for n, p in tr.model.named_parameters() if n.startswith("image_encoder."))


def test_gradient_accumulation_equals_larger_batch(tmp_path):
    det = dict(clip_len=1, prob_box=1.0, box_jitter=0.0, correction_iters=0, grad_clip=0.0, warmup=1, **FAST)
    cases = [case_2d(i) for i in range(4)]
    grads = []
    for i, (bs, acc) in enumerate(((2, 1), (1, 2))):
        tr = Trainer(TrainConfig(out=str(tmp_path / str(i)), steps=1, batch_size=bs, accum=acc, **det), cases)
        assert [r.case for r in tr._refs(0, 0)] + ([r.case for r in tr._refs(0, 1)] if acc == 2 else []) \
            == [r.case for r in Trainer(TrainConfig(out=str(tmp_path / "x"), steps=1, batch_size=2, **det),
                                        cases)._refs(0, 0)]
        rec = tr.train_step()
        assert rec["objects"] == 2
        grads.append({n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-6)


def test_noisy_labels_for_training_clean_for_evaluation():
    train_case, val_case = case_2d(0, noisy=True), case_2d(1, "val", noisy=True)
    ds = build_dataset([train_case, val_case], 48, noisy=True)
    assert np.array_equal(ds.train[0].masks[0], train_case.label_noisy[0])
    assert not np.array_equal(ds.train[0].masks[0], train_case.label[0])
    assert np.array_equal(ds.held_out[0].eval_label, val_case.label)
    clean = build_dataset([train_case, val_case], 48, noisy=False)
    assert np.array_equal(clean.train[0].masks[0], train_case.label[0])


def test_adapter_init_from_plain_weights_and_trains(tmp_path):
    plain = SAM2Model(medmem.get_config("test_tiny"))
    save_weights(plain, tmp_path / "plain.safetensors")
    cfg = TrainConfig(out=str(tmp_path / "run"), init=str(tmp_path / "plain.safetensors"), adapter_frames=2,
                      steps=2, batch_size=1, clip_len=3, warmup=1, lr=1e-3, freeze=("image_encoder",), **FAST)
    tr = Trainer(cfg, [case_3d(0), case_3d(1, "val")])
    sd = tr.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in plain.state_dict().items())   # plain weights loaded
    ups = [k for k in sd if k.endswith("adapter.linear_up.weight")]
    assert ups and all(sd[k].abs().sum() == 0 for k in ups)                    # adapters start at zero
    tr.fit()
    sd = tr.model.state_dict()
    assert all(sd[k].abs().sum() > 0 for k in ups)                              # and learned something
    assert torch.equal(sd["image_encoder.trunk.pos_embed"], plain.state_dict()["image_encoder.trunk.pos_embed"])
    # without a config name, the config comes from the init weights
    inferred = Trainer(TrainConfig(**{**cfg.to_dict(), "model": None, "adapter_frames": 0}), [case_3d(0)])
    assert inferred.model.cfg.name == "test_tiny" and not inferred.model.cfg.temporal_adapter.blocks
    with pytest.raises(ValueError, match="name a model config"):
        Trainer(TrainConfig(out=str(tmp_path / "none")), [case_3d(0)])


def test_bf16_autocast_on_request(tmp_path):
    cfg = TrainConfig(out=str(tmp_path), steps=1, batch_size=2, clip_len=2, amp="bf16", **FAST)
    tr = Trainer(cfg, mixed_cases())
    assert tr.amp == torch.bfloat16
    rec = tr.train_step()
    assert np.isfinite(rec["loss"]) and all(p.dtype == torch.float32 for p in tr.model.parameters())
    assert Trainer(TrainConfig(out=str(tmp_path / "b"), steps=1, **FAST), mixed_cases()).amp is None  # CPU: fp32


def test_training_bank_retrieval_shapes_and_detached():
    cfg = medmem.get_config("test_tiny")
    bank = TrainingBank(cfg, capacity=3, k=2, threshold=0.0)
    fs = cfg.feat_size
    assert bank.retrieve(torch.randn(2, cfg.hidden_dim, fs, fs)) == ([], [])
    for i in range(5):
        f = torch.randn(2, cfg.hidden_dim, fs, fs)
        mf = torch.randn(2, cfg.mem_dim, fs, fs, requires_grad=True)
        cands = TrainingBank.candidates(f, mf * 1, torch.randn(2, cfg.mem_dim, fs, fs), torch.randn(2, cfg.hidden_dim),
                                        torch.full((2, 1), 5.0), torch.full((2, 1), 0.1 * (i + 1)))
        bank.offer_all(cands)
    assert len(bank) == 3
    assert all(not e.maskmem_features.requires_grad for e in bank.policy.bank.entries)
    assert min(bank.policy.bank.conf) > 0.3  # later, more confident entries replaced the first ones
    mems, ptrs = bank.retrieve(torch.randn(4, cfg.hidden_dim, fs, fs))
    assert len(mems) == len(ptrs) == 2
    assert mems[0].features.shape == (4, cfg.mem_dim, fs, fs) and mems[0].t_pos == 0
    assert ptrs[0].ptr.shape == (4, cfg.hidden_dim) and ptrs[0].t_diff == 0
    bank.frozen = True
    assert bank.offer_all(cands) == 0


def test_interrupt_saves_completed_steps_and_resumes_exactly(tmp_path):
    # clips with one prompted frame: the second frame runs memory attention, whose dropout uses the RNG
    kw = dict(steps=4, batch_size=2, clip_len=2, warmup=1, max_cond_frames=1, **FAST)
    cases = [case_3d(0), case_3d(1), case_3d(2, "val")]
    train(TrainConfig(out=str(tmp_path / "a"), **kw), cases)
    tr = Trainer(TrainConfig(out=str(tmp_path / "b"), **kw), cases)
    forward = tr.wrapped

    def forward_then_interrupt(*args):
        out = forward(*args)  # the interrupted step used the RNG (dropout) before Ctrl-C
        if tr.step == 2:
            raise KeyboardInterrupt
        return out

    tr.wrapped = forward_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    train(TrainConfig(out=str(tmp_path / "b"), **kw), cases, resume=True)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_label_noise_on_the_fly_corrupts_only_training_labels():
    raws = [case_3d(i) for i in range(6)] + [case_3d(9, "val")]
    ds = build_dataset(raws, 48, label_noise=1.0, seed=3)
    changed = [not np.array_equal(c.masks, r.label) for c, r in zip(ds.train, raws)]
    assert sum(changed) >= 4                                   # corrupted (a kind may leave a case unchanged)
    assert np.array_equal(ds.held_out[0].eval_label, raws[-1].label)
    again = build_dataset(raws, 48, label_noise=1.0, seed=3)
    assert all(np.array_equal(a.masks, b.masks) for a, b in zip(ds.train, again.train))  # deterministic
    clean = build_dataset(raws, 48, label_noise=0.0)
    assert all(np.array_equal(c.masks, r.label) for c, r in zip(clean.train, raws))
