"""General (collaborative-filtering) recommenders: user -> all items. Importing registers them."""

from modalrec.models.general.bpr import BPR
from modalrec.models.general.diffrec import DiffRec
from modalrec.models.general.ease import EASE
from modalrec.models.general.hdrm import HDRM
from modalrec.models.general.hgcf import HGCF
from modalrec.models.general.itemknn import ItemKNN
from modalrec.models.general.ldiffrec import LDiffRec
from modalrec.models.general.lightgcn import LightGCN
from modalrec.models.general.pop import Pop

__all__ = ["BPR", "DiffRec", "EASE", "HDRM", "HGCF", "ItemKNN", "LDiffRec", "LightGCN", "Pop"]
