"""Stateful inference over one image, a volume / video, or an unordered image set."""
