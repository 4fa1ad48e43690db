"""SAM 2's memory selection ("fifo"): conditioning frames + the last N frames + object pointers.

A pure function of the frame index and the stored memories, reproducing the official video
predictor's choice (closest conditioning frames, temporal stride, pointer window, reverse
tracking, signed temporal distances).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Tuple, TypeVar

from ..config import SAM2Config

E = TypeVar("E")


def closest_cond_frames(frame_idx: int, cond: Mapping[int, E], max_num: int) -> Tuple[Dict[int, E], Dict[int, E]]:
    """Up to `max_num` conditioning frames nearest in time to `frame_idx` (-1: all) → (selected, others).

    Always keeps the nearest one before and the nearest one at/after the frame, then the closest others.
    """
    if max_num == -1 or len(cond) <= max_num:
        return dict(cond), {}
    if max_num < 2:
        raise ValueError("max_cond_frames_in_attn must be -1 or >= 2")
    sel: Dict[int, E] = {}
    before = max((t for t in cond if t < frame_idx), default=None)
    after = min((t for t in cond if t >= frame_idx), default=None)
    for t in (before, after):
        if t is not None:
            sel[t] = cond[t]
    rest = sorted((t for t in cond if t not in sel), key=lambda t: abs(t - frame_idx))[: max_num - len(sel)]
    sel.update((t, cond[t]) for t in rest)
    return sel, {t: v for t, v in cond.items() if t not in sel}


def select_fifo(frame_idx: int, cond: Mapping[int, E], non_cond: Mapping[int, E], cfg: SAM2Config, num_frames: int,
                reverse: bool = False, training: bool = False
                ) -> Tuple[List[Tuple[int, E]], List[Tuple[int, E]], int]:
    """Memories for `frame_idx` → (mask memories as (t_pos, entry), object pointers as (t_diff, entry),
    pointer normaliser `ptr_tpos_max`).

    t_pos 0 marks conditioning frames; t_pos = num_maskmem - k for the frame k steps back in the
    tracking direction. Object pointers come from conditioning frames (only past ones at inference)
    and from the previous `max_obj_ptrs_in_encoder - 1` frames.
    """
    sel, unsel = closest_cond_frames(frame_idx, cond, cfg.max_cond_frames_in_attn)
    mems: List[Tuple[int, E]] = [(0, e) for e in sel.values()]
    stride = 1 if training else cfg.memory_temporal_stride_for_eval
    n = cfg.num_maskmem
    for t_pos in range(1, n):
        t_rel = n - t_pos
        if t_rel == 1:
            prev = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        e = non_cond.get(prev)
        if e is None:
            e = unsel.get(prev)
        if e is not None:
            mems.append((t_pos, e))

    ptrs: List[Tuple[int, E]] = []
    max_ptrs = min(num_frames, cfg.max_obj_ptrs_in_encoder)
    if cfg.use_obj_ptrs_in_encoder:
        if not training and cfg.only_obj_ptrs_in_the_past_for_eval:
            ptr_cond = {t: e for t, e in sel.items() if (t >= frame_idx if reverse else t <= frame_idx)}
        else:
            ptr_cond = sel
        sign = -1 if reverse else 1
        for t, e in ptr_cond.items():
            ptrs.append(((frame_idx - t) * sign if cfg.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t), e))
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or t >= num_frames:
                break
            e = non_cond.get(t)
            if e is None:
                e = unsel.get(t)
            if e is not None:
                ptrs.append((t_diff, e))
    return mems, ptrs, max(max_ptrs - 1, 1)
