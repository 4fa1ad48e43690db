"""Prompt encoder: points / box corners → sparse tokens; a low-res mask → a dense embedding."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import RandomFourierEncoding

# point labels understood by the encoder
NOT_A_POINT, NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int, embedding_hw: Tuple[int, int], image_hw: Tuple[int, int],
                 mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_hw = embedding_hw
        self.image_hw = image_hw
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * embedding_hw[0], 4 * embedding_hw[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self, grid_hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(1, C, h, w) encoding of the image-embedding grid (default: the model's; `grid_hw` for an input of
        another size, e.g. a region of the image encoded on its own)."""
        return self.pe_layer.grid(*(grid_hw or self.embedding_hw)).unsqueeze(0)

    def image_hw_for(self, grid_hw: Optional[Tuple[int, int]]) -> Tuple[int, int]:
        """Input size (pixels) of an image whose embedding grid is `grid_hw` (None: the model's own)."""
        if grid_hw is None or tuple(grid_hw) == tuple(self.embedding_hw):
            return self.image_hw
        return (grid_hw[0] * self.image_hw[0] // self.embedding_hw[0], grid_hw[1] * self.image_hw[1] // self.embedding_hw[1])

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool,
                     image_hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """coords (B, N, 2) pixels at model resolution (or of an input `image_hw`), labels (B, N) → (B, N[+1], C)."""
        coords = coords + 0.5  # pixel centres
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.encode_points(coords, image_hw or self.image_hw)
        lab = labels.unsqueeze(-1)
        emb = torch.where(lab == NOT_A_POINT, torch.zeros_like(emb) + self.not_a_point_embed.weight, emb)
        for value in range(4):
            emb = torch.where(lab == value, emb + self.point_embeddings[value].weight, emb)
        return emb

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes (B, 4) xyxy pixels → (B, 2, C)."""
        corners = self.pe_layer.encode_points(boxes.reshape(-1, 2, 2) + 0.5, self.image_hw)
        corners[:, 0] += self.point_embeddings[BOX_TOP_LEFT].weight[0]
        corners[:, 1] += self.point_embeddings[BOX_BOTTOM_RIGHT].weight[0]
        return corners

    def forward(self, points: Optional[Tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor],
                masks: Optional[torch.Tensor], pad: Optional[bool] = None,
                grid_hw: Optional[Tuple[int, int]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """→ sparse (B, N, C), dense (B, C, h, w). masks: (B, 1, 4h, 4w) logits.

        pad: append a "not a point" token after the points (default: when no box is given, as SAM does).
        grid_hw: the embedding grid of an input of another size than the model's (points in its pixels).
        """
        image_hw = self.image_hw_for(grid_hw)
        grid_hw = tuple(grid_hw or self.embedding_hw)
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        device = self.no_mask_embed.weight.device
        sparse = torch.empty(bs, 0, self.embed_dim, device=device)
        if points is not None:
            sparse = torch.cat([sparse, self.embed_points(points[0], points[1], pad=boxes is None if pad is None else pad,
                                                              image_hw=image_hw)], dim=1)
        if boxes is not None:
            if image_hw != self.image_hw:
                raise ValueError("box tensors are given at the model's own input size; pass boxes as corner points")
            sparse = torch.cat([sparse, self.embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, *grid_hw)
        return sparse, dense
