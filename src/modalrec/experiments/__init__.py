"""Experiments: benchmark suites, hyper-parameter search, significance tests, tables, plots, HTML reports.

- :mod:`~modalrec.experiments.suite`: models x datasets x seeds from a YAML file, resumable;
- :mod:`~modalrec.experiments.search`: Optuna search on the validation split only, stored in SQLite;
- :mod:`~modalrec.experiments.significance`: paired tests over users, Holm correction;
- :mod:`~modalrec.experiments.collect`: finished run directories -> records;
- :mod:`~modalrec.experiments.tables`, :mod:`~modalrec.experiments.plots`,
  :mod:`~modalrec.experiments.report`: Markdown/CSV tables, PNG plots and one static HTML page.
"""
