"""Serving a trained run over HTTP.

:mod:`modalrec.serve.engine` ranks (``ServingEngine``, no HTTP); :mod:`modalrec.serve.app` is the
FastAPI service (``create_app``, ``serve``; needs the ``serve`` extra). Nothing heavy is imported
here, so ``modalrec --help`` stays fast.
"""
