"""Sequential (next-item) recommenders: history -> all items. Importing registers them."""

from modalrec.models.sequential.findrec import FindRec
from modalrec.models.sequential.gru4rec import GRU4Rec
from modalrec.models.sequential.sasrec import SASRec

__all__ = ["FindRec", "GRU4Rec", "SASRec"]
