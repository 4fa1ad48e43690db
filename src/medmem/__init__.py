"""medmem: promptable medical image segmentation with memory, built on SAM 2."""
__version__ = "0.1.0"
