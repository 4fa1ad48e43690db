"""The training loop: single device or DDP, gradient accumulation, bf16 autocast, checkpoints with
exact resume, JSONL metrics, periodic validation, continual multi-task schedule.

    from medmem.train import TrainConfig, train
    result = train(TrainConfig(data="synth/manifest.json", model="medmem_small_256", steps=2000))

Randomness: data and prompts draw from a generator seeded by (seed, rank, step, micro-batch),
so they need no state; the torch RNG (dropout) is saved in checkpoints. A resumed run therefore
continues exactly as the uninterrupted one would have (same weights, bit for bit, on the same
device and thread count).
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..allocator import tune_allocator
from ..atomic import atomic_path
from ..checkpoint import adapt_layout, infer_config, load_weights, read_state_dict, save_weights, strip_prefixes
from ..config import SAM2Config, TemporalAdapterConfig, get_config
from ..model.sam2 import SAM2Model
from . import ddp
from .bank import TrainingBank
from .clips import ShardedSampler, build_pool, make_groups
from .config import RESUMABLE_FIELDS, TrainConfig
from .continual import ContinualLog, task_index
from .data import DataSet, RawCase, build_dataset, load_raw_cases
from .schedule import WarmupCosine, check_groups_cover, freeze, param_groups
from .step import ClipForward
from .validate import evaluate

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
BANK = "bank.safetensors"
METRICS = "metrics.jsonl"
CONTINUAL = "continual.json"
FORMAT = "medmem-train-checkpoint"


@dataclass
class TrainResult:
    out: Path
    step: int
    finished: bool
    weights: Optional[Path] = None
    last: Dict[str, float] = field(default_factory=dict)
    val: Optional[dict] = None
    continual: Optional[dict] = None


# ----------------------------------------------------------------------------- model
def model_config(cfg: TrainConfig) -> SAM2Config:
    """The model config of a run: the named config, or without a name the one of the ``init`` weights
    (medmem metadata, else inferred from the keys), with a temporal adapter in every trunk block
    when ``adapter_frames`` > 0."""
    if cfg.model:
        mcfg = get_config(cfg.model)
    elif cfg.init:
        sd, meta = read_state_dict(cfg.init)
        mcfg = infer_config(sd, meta)
    else:
        raise ValueError("name a model config (TrainConfig.model / --config) or give init weights")
    if cfg.adapter_frames > 0:
        mcfg = mcfg.replace(temporal_adapter=TemporalAdapterConfig(
            blocks=tuple(range(sum(mcfg.trunk.stages))), num_frames=cfg.adapter_frames))
    return mcfg


def load_init(model: SAM2Model, path: str) -> None:
    """Load starting weights strictly, except that temporal-adapter weights absent from the file keep
    their zero initialisation (starting an adapter model from plain SAM 2 weights)."""
    sd, _ = read_state_dict(path)
    sd = adapt_layout(strip_prefixes(dict(sd)), model.cfg)
    own = model.state_dict()
    for k in own:
        if k not in sd and ".adapter." in k:
            sd[k] = own[k]
    load_weights(model, sd)


def amp_dtype(cfg: TrainConfig, device: torch.device) -> Optional[torch.dtype]:
    """bf16 when asked, or on CUDA with "auto"; None = fp32."""
    if cfg.amp == "bf16":
        return torch.bfloat16
    if cfg.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through `medmem.atomic.atomic_path` (never a half-written checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _rng_state(device: torch.device) -> dict:
    st = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


# ----------------------------------------------------------------------------- trainer
class Trainer:
    """Builds model, data, optimizer and memory bank from a `TrainConfig`; `fit` runs the loop.

    ``cases``: in-memory `RawCase`s instead of ``cfg.data``. ``resume``: continue from
    ``cfg.out/checkpoint.pt`` when it exists; settings are taken from the checkpoint except the
    `RESUMABLE_FIELDS`, which come from ``overrides`` (default: from ``cfg``).
    """

    def __init__(self, cfg: TrainConfig, cases: Optional[Sequence[RawCase]] = None, resume: bool = False,
                 overrides: Optional[Dict[str, Any]] = None) -> None:
        self.out = Path(cfg.out)
        self.ckpt: Optional[dict] = None
        if resume and (self.out / CHECKPOINT).is_file():
            self.ckpt = torch.load(self.out / CHECKPOINT, map_location="cpu", weights_only=True)
            if self.ckpt.get("format") != FORMAT:
                raise ValueError(f"{self.out / CHECKPOINT} is not a medmem training checkpoint")
            if overrides is None:
                overrides = {k: getattr(cfg, k) for k in RESUMABLE_FIELDS}
            overrides = {"stop_at": None, **overrides}  # a stop point belongs to one invocation
            cfg = TrainConfig.from_dict(self.ckpt["train_config"],
                                        **{k: v for k, v in overrides.items() if k in RESUMABLE_FIELDS})
        self.cfg = cfg
        self.dist = ddp.init_distributed(cfg.device)
        self.device = self.dist.device
        if self.device.type == "cpu":
            tune_allocator()
        self.amp = amp_dtype(cfg, self.device)

        torch.manual_seed(cfg.seed)
        mcfg = SAM2Config.from_dict(self.ckpt["model_config"]) if self.ckpt else model_config(cfg)
        self.model = SAM2Model(mcfg)
        if cfg.init and not self.ckpt:
            load_init(self.model, cfg.init)
        self.model.to(self.device).train()
        self.frozen = freeze(self.model, cfg.freeze)
        torch.manual_seed(cfg.seed * 1000 + self.dist.rank + 1)  # dropout stream, distinct per rank

        raws = list(cases) if cases is not None else self._load_raw()
        self.data: DataSet = build_dataset(raws, mcfg.image_size, val_split=cfg.val_split, intensity=cfg.intensity,
                                           noisy=cfg.noisy_labels, tasks=cfg.tasks, label_noise=cfg.label_noise,
                                           seed=cfg.seed)
        self.task_order = list(cfg.tasks) if cfg.schedule == "continual" else []
        self.pools = ([build_pool(self.data.train, [t]) for t in self.task_order] if self.task_order
                      else [build_pool(self.data.train)])
        for i, p in enumerate(self.pools):
            if not p:
                raise ValueError(f"no training objects for task {self.task_order[i] if self.task_order else 'any'}")
        self.samplers = [ShardedSampler(len(p), self.dist.world, self.dist.rank, cfg.seed) for p in self.pools]

        self.bank = (TrainingBank(mcfg, cfg.bank_capacity, cfg.bank_k, cfg.bank_threshold, cfg.bank_conf_weight)
                     if cfg.memory == "confidence" else None)
        self.forward_module = ClipForward(self.model, cfg, self.bank)
        self.groups = param_groups(self.model, cfg.lr, cfg.weight_decay, cfg.layer_decay)
        check_groups_cover(self.model, self.groups)
        self.optimizer = torch.optim.AdamW(self.groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.scheduler = WarmupCosine(self.optimizer, cfg.lr, cfg.steps, cfg.warmup, cfg.min_lr_ratio,
                                      cfg.steps_per_task if (self.task_order and cfg.restart_lr_per_task) else 0)
        self.continual = ContinualLog(self.task_order, cfg.memory) if self.task_order else None
        self.step = 0
        self._rng_for_save: Optional[dict] = None  # set while saving after an interrupted step
        if self.ckpt:
            self._restore(self.ckpt)
        self.wrapped = ddp.wrap(self.forward_module, self.dist, cfg.find_unused_parameters)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ data
    def _load_raw(self) -> List[RawCase]:
        if not self.cfg.data:
            raise ValueError("no data: set TrainConfig.data (or pass cases=)")
        return load_raw_cases(self.cfg.data, self.cfg.tasks, ("train", "val", "test"), self.cfg.val_fraction)

    def _refs(self, step: int, micro: int):
        cfg = self.cfg
        if self.task_order:
            ti = task_index(step, cfg.steps_per_task, len(self.task_order))
            local = step - ti * cfg.steps_per_task
        else:
            ti, local = 0, step
        pos = (local * cfg.accum + micro) * cfg.batch_size
        pool = self.pools[ti]
        return [pool[i] for i in self.samplers[ti].indices(pos, cfg.batch_size)]

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "format": FORMAT, "version": 1, "step": self.step,
            "train_config": self.cfg.to_dict(), "model_config": self.model.cfg.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": self._rng_for_save or _rng_state(self.device),
            "bank": self.bank.state_dict() if self.bank is not None else None,
            "continual": self.continual.to_dict() if self.continual is not None else None,
        }

    def _restore(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model"], strict=True)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"], self.device)
        if self.bank is not None and ck.get("bank") is not None:
            self.bank.load_state_dict(ck["bank"], self.device)
        if self.continual is not None and ck.get("continual"):
            self.continual = ContinualLog.from_dict(ck["continual"])
        self.step = int(ck["step"])

    def save_checkpoint(self) -> Optional[Path]:
        """Write ``out/checkpoint.pt`` atomically (rank 0)."""
        path = None
        if self.dist.is_main:
            path = self.out / CHECKPOINT
            _atomic_torch_save(self.state(), path)
        ddp.barrier(self.dist)
        return path

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """On resume, drop records of steps after the checkpoint (written by the interrupted run)."""
        p = self.out / METRICS
        if not self.dist.is_main or not p.is_file():
            return
        keep = [ln for ln in p.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
        p.write_text("".join(ln + "\n" for ln in keep))

    # ------------------------------------------------------------------ evaluation
    def validate(self, tasks: Sequence[str] = ()) -> Optional[dict]:
        """Evaluate the held-out cases on rank 0 (others wait); None without held-out cases."""
        res = None
        if self.dist.is_main and self.data.held_out:
            if self.bank is not None:
                self.bank.frozen = True
            try:
                res = evaluate(self.model, self.data.held_out, bank=self.bank, max_cases=self.cfg.val_cases,
                               amp_dtype=self.amp, tasks=tasks)
            finally:
                if self.bank is not None:
                    self.bank.frozen = False
        ddp.barrier(self.dist)
        return res

    # ------------------------------------------------------------------ loop
    def train_step(self) -> Dict[str, float]:
        """One optimizer update (``accum`` micro-batches) → logged statistics."""
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        totals: Dict[str, torch.Tensor] = {}
        candidates = []
        for micro in range(cfg.accum):
            rng = np.random.default_rng([cfg.seed, self.dist.rank, self.step, micro])
            groups = make_groups(self.data.train, self._refs(self.step, micro), cfg.clip_len, rng, self.device,
                                 cfg.full_clip_prob, cfg.reverse_prob)
            sync = (contextlib.nullcontext() if (not self.dist.enabled or micro == cfg.accum - 1)
                    else self.wrapped.no_sync())
            amp = (torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None
                   else contextlib.nullcontext())
            with sync:
                with amp:
                    loss, stats = self.wrapped(groups, rng)
                (loss / cfg.accum).backward()
            candidates += self.forward_module.candidates
            for k, v in stats.items():
                totals[k] = totals.get(k, 0) + v.to(self.device)
        gnorm = None
        if cfg.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_scale", 1.0)
        self.optimizer.step()
        self.scheduler.step()
        if self.bank is not None:
            self.bank.offer_all(candidates)
        s = ddp.sum_stats(totals, self.dist)
        n = max(s.pop("objects"), 1.0)
        rec = {k: v / n for k, v in s.items() if k != "frames"}
        rec = {"loss": rec.pop("total"), **{f"loss_{k}": v for k, v in rec.items()}}
        rec["lr"] = lr
        rec["objects"] = int(n)
        if gnorm is not None:
            rec["grad_norm"] = float(gnorm)
        if self.bank is not None:
            rec["bank"] = len(self.bank)
        return rec

    def fit(self) -> TrainResult:
        cfg = self.cfg
        if self.ckpt:
            self._trim_log()
        elif self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / METRICS).unlink(missing_ok=True)
            (self.out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        end = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
        bar = None
        if self.dist.is_main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="train", dynamic_ncols=True)
        last: Dict[str, float] = {}
        val = None
        t_last = time.perf_counter()
        rng_before: Optional[dict] = None
        try:
            while self.step < end:
                rng_before = _rng_state(self.device)
                rec = self.train_step()
                self.step += 1
                now = time.perf_counter()
                rec.update(step=self.step, time=round(now - t_last, 4))
                t_last = now
                last = rec
                if self.step % cfg.log_every == 0 or self.step == end:
                    self._log(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.2e}")
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.steps:
                    val = self.validate()
                    if val is not None:
                        self._log({"step": self.step, "val": val})
                if self.continual is not None and self.step % cfg.steps_per_task == 0:
                    ti = self.step // cfg.steps_per_task - 1
                    res = self.validate(self.task_order[:ti + 1])
                    if res is not None:
                        self.continual.add(self.step, res)
                        self.continual.write(self.out / CONTINUAL)
                        self._log({"step": self.step, "continual_task": self.task_order[ti], "val": res})
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < end:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            # the interrupted step is discarded: save the completed steps with the RNG state they left
            if self.dist.is_main:
                self._rng_for_save = rng_before
                _atomic_torch_save(self.state(), self.out / CHECKPOINT)
                self._rng_for_save = None
            raise
        finally:
            if bar is not None:
                bar.close()
        self.save_checkpoint()
        finished = self.step >= cfg.steps
        result = TrainResult(self.out, self.step, finished, last=last)
        if finished:
            val = self.validate() if self.continual is None else None
            if val is not None:
                self._log({"step": self.step, "val": val, "final": True})
            result.val = val
            if self.dist.is_main:
                meta = {"medmem_train": json.dumps({"steps": self.step, "model": self.model.cfg.name,
                                                    "memory": cfg.memory, "data": cfg.data})}
                result.weights = save_weights(self.model, self.out / WEIGHTS, extra_meta=meta)
            if self.bank is not None:  # every rank's entries, gathered (collective); rank 0 writes
                self.bank.save(self.out / BANK, self.dist)
            ddp.barrier(self.dist)
        if self.continual is not None:
            result.continual = self.continual.to_dict()
        return result

    def close(self) -> None:
        ddp.cleanup(self.dist)


def train(cfg: TrainConfig, cases: Optional[Sequence[RawCase]] = None, resume: bool = False,
          overrides: Optional[Dict[str, Any]] = None) -> TrainResult:
    """Build a `Trainer` and run it to ``cfg.steps`` (or ``cfg.stop_at``)."""
    tr = Trainer(cfg, cases, resume, overrides)
    try:
        return tr.fit()
    finally:
        tr.close()
