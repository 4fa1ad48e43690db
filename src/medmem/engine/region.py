"""Region tracking: encode only a square region around the object on propagated slices (box-tracking models).

A box-tracking model (no memory, e.g. `medmem_lite_256`) knows where the object is on the next slice: inside
the previous slice's mask box. Its image encoder, LiteMedSAM's TinyViT, costs about 1.3 s per 256² slice on
two CPU cores, and its cost grows with the number of pixels. With `SAM2Config.region_size` = r > 0, each
propagated slice is encoded as a square region of the model input around the previous box:

- side = max(r, `region_context` × the box's longer side), at most the whole image, centred on the box and
  shifted to lie inside the image;
- that region is resampled to r × r (no resampling when its side is r: small objects keep their pixels), so
  the encoder sees r² pixels instead of S² (r = 128 of S = 256: a quarter);
- the box is decoded in the region's pixels (the prompt encoder and decoder work on any grid), and the
  mask is pasted back into the slice's S/4-resolution logits (outside the region: no object).

TinyViT has no global attention (windows and convolutions only), so inside a region at scale 1 its features
are those of the whole image up to effects near the region's border; at scale < 1 (objects larger than the
region) the model sees the object smaller, as it sees small organs in training. Prompted slices are not
affected: they are decoded from the whole image (the mask equals LiteMedSAM's own).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from ..model import NO_OBJ_SCORE


@dataclass(frozen=True)
class Region:
    """A square [x0, x0 + side) × [y0, y0 + side) of the model input (model pixels), encoded at `size` × `size`."""

    x0: float
    y0: float
    side: float
    size: int

    @property
    def scale(self) -> float:
        """Region pixels per model pixel (≤ 1)."""
        return self.size / self.side

    def to_region(self, coords: torch.Tensor) -> torch.Tensor:
        """Model-pixel coordinates (…, 2) as (x, y) → region pixels (pixel centres map to pixel centres)."""
        off = coords.new_tensor([self.x0, self.y0])
        return (coords + 0.5 - off) * self.scale - 0.5

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) model input → (B, C, size, size): the region, resampled (area-averaged when shrunk)."""
        x0, y0, side = int(round(self.x0)), int(round(self.y0)), int(round(self.side))
        part = image[..., y0:y0 + side, x0:x0 + side]
        if side == self.size:
            return part.contiguous()
        return F.interpolate(part, size=(self.size, self.size), mode="bilinear", align_corners=False,
                             antialias=side > self.size)

    def paste(self, logits: torch.Tensor, image_size: int, out_side: int) -> torch.Tensor:
        """Logits (B, 1, h, w) over the region → (B, 1, out_side, out_side) over an image of side `image_size`
        (model pixels), NO_OBJ_SCORE outside the region."""
        k = out_side / image_size  # output pixels per model pixel
        x0, y0, side = int(round(self.x0 * k)), int(round(self.y0 * k)), int(round(self.side * k))
        part = F.interpolate(logits.float(), size=(side, side), mode="bilinear", align_corners=False)
        out = torch.full((logits.shape[0], logits.shape[1], out_side, out_side), NO_OBJ_SCORE,
                         dtype=torch.float32, device=logits.device)
        out[..., y0:y0 + side, x0:x0 + side] = part
        return out


def region_around(box: Sequence[float], image_size: int, size: int, context: float) -> Region:
    """The region for a box [x0, y0, x1, y1] (model pixels, inclusive): side max(size, context × longer side),
    at most the image, centred on the box and inside the image; whole pixels so that crops are exact."""
    x0, y0, x1, y1 = (float(v) for v in box)
    longer = max(x1 - x0 + 1, y1 - y0 + 1)
    side = int(round(min(float(image_size), max(float(size), context * longer))))
    cx, cy = (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2
    left = int(round(min(max(cx - side / 2, 0.0), image_size - side)))
    top = int(round(min(max(cy - side / 2, 0.0), image_size - side)))
    return Region(float(left), float(top), float(side), int(size))


def box_inputs(region: Region, box: Sequence[float], device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Point inputs of a box (model pixels) in the region's pixels: ((1, 2, 2), (1, 2)) with corner labels 2, 3."""
    corners = torch.tensor([[box[0], box[1]], [box[2], box[3]]], dtype=torch.float32, device=device)
    return region.to_region(corners)[None], torch.tensor([[2, 3]], dtype=torch.int32, device=device)
