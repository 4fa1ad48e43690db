"""Data: dataset layouts (MSD, nnU-Net, SAMed-2 slices, CVPR 2025 npz), the synthetic MedBank-style
generator and prompt simulation."""
