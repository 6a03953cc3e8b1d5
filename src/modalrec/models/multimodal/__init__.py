"""Multimodal collaborative filtering (the survey's model zoo): user x item ranking from interactions
plus item content. Importing registers them."""

from modalrec.models.multimodal.vbpr import VBPR

__all__ = ["VBPR"]
