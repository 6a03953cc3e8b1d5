"""Data: the :class:`~modalrec.data.dataset.Dataset`, readers per format (``sources/``), preprocessing, splits,
training views, item features (``features/``) and named datasets (``registry`` + ``catalogue``).

Importing this package registers the built-in named datasets (:mod:`modalrec.data.catalogue`).
"""

from modalrec.data import catalogue  # noqa: F401  (registers the built-in names)
