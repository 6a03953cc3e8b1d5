"""Recommendation models: the API and the registry in :mod:`modalrec.models.base`, one model per file in
``general/`` (collaborative filtering), ``sequential/`` (next item) and ``multimodal/`` (CF with item content).

Importing this package imports every module below it, and each model registers itself with ``@register``:
adding a model is adding its file.
"""

import importlib
import pkgutil

for _module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)
