"""Evaluation: segmentation metrics and the interactive-protocol scores."""
from .interactive import final_score, interaction_auc
from .metrics import (
    assd,
    binary_metrics,
    dice,
    evaluate_case,
    hausdorff,
    hd95,
    iou,
    nsd,
    spacing_from_itk,
    surface_distances,
    volume_spacing,
)

__all__ = [
    "assd", "binary_metrics", "dice", "evaluate_case", "final_score", "hausdorff", "hd95",
    "interaction_auc", "iou", "nsd", "spacing_from_itk", "surface_distances", "volume_spacing",
]
