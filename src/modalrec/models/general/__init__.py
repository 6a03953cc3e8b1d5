"""General (collaborative-filtering) recommenders: user -> all items. Importing registers them."""

from modalrec.models.general.bpr import BPR
from modalrec.models.general.ease import EASE
from modalrec.models.general.hdrm import HDRM
from modalrec.models.general.hgcf import HGCF
from modalrec.models.general.itemknn import ItemKNN
from modalrec.models.general.lightgcn import LightGCN
from modalrec.models.general.pop import Pop

__all__ = ["BPR", "EASE", "HDRM", "HGCF", "ItemKNN", "LightGCN", "Pop"]
