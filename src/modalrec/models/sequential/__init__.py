"""Sequential (next-item) recommenders: history -> all items. Importing registers them."""

from modalrec.models.sequential.bert4rec import BERT4Rec
from modalrec.models.sequential.findrec import FindRec
from modalrec.models.sequential.gru4rec import GRU4Rec
from modalrec.models.sequential.mamba4rec import Mamba4Rec
from modalrec.models.sequential.sasrec import SASRec
from modalrec.models.sequential.sasrec_features import SASRecFeatures

__all__ = ["BERT4Rec", "FindRec", "GRU4Rec", "Mamba4Rec", "SASRec", "SASRecFeatures"]
