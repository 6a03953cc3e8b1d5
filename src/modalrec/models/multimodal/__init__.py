"""Multimodal collaborative filtering (the survey's model zoo): user x item ranking from interactions
plus item content. Importing registers them."""

from modalrec.models.multimodal.freedom import FREEDOM
from modalrec.models.multimodal.lattice import LATTICE
from modalrec.models.multimodal.mmgcn import MMGCN
from modalrec.models.multimodal.vbpr import VBPR

__all__ = ["FREEDOM", "LATTICE", "MMGCN", "VBPR"]
