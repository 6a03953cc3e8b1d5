"""Multimodal collaborative filtering (the survey's model zoo): user x item ranking from interactions
plus item content. Importing registers them."""

from modalrec.models.multimodal.bm3 import BM3
from modalrec.models.multimodal.dmrl import DMRL
from modalrec.models.multimodal.dualgnn import DualGNN
from modalrec.models.multimodal.freedom import FREEDOM
from modalrec.models.multimodal.grcn import GRCN
from modalrec.models.multimodal.lattice import LATTICE
from modalrec.models.multimodal.lgmrec import LGMRec
from modalrec.models.multimodal.mgcn import MGCN
from modalrec.models.multimodal.micro import MICRO
from modalrec.models.multimodal.mmgcn import MMGCN
from modalrec.models.multimodal.slmrec import SLMRec
from modalrec.models.multimodal.vbpr import VBPR

__all__ = ["BM3", "DMRL", "DualGNN", "FREEDOM", "GRCN", "LATTICE", "LGMRec", "MGCN", "MICRO", "MMGCN", "SLMRec", "VBPR"]
