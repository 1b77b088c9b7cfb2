"""Nightly reproducibility checks: is a publication's analysis still reproducible?

How the pieces fit (one module per job):

- ``notebooks``: what a check runs, from the repository's ``panbinder.yml`` (validated) or every
  notebook that has stored outputs (``load_plan`` -> ``CheckPlan``).
- ``execute``: runs one notebook headless with nbclient within a time limit, against a local
  kernel, a started kernel manager or a kernel known by its connection info; returns the
  executed notebook and its first error (``execute_notebook`` -> ``Execution``).
- ``compare`` (with ``normalise`` and ``render_diff``): compares executed outputs with the
  stored ones cell by cell, with tolerances (``OutputComparison``, configurable), and keeps
  nbdime's text diff of the cells that differ (``Comparison``).
- ``verdict``: the steps of a check and the one verdict they decide (``CheckResult``), frozen
  dataclasses with a JSON round trip.
- ``records``: the ``checks`` table of the catalogue (model ``CheckRun`` in
  ``data_mounts/models.py``, migration 0003): record a run, read a publication's history and
  latest verdict, count verdicts per night (``CheckRecords``).
- ``svg``: the ``reproducible.svg`` badge and the history chart, rendered server-side.

Still to be wired, after the composition root lands: the step runner that verifies the
archive (restoring the image if the registry lost it), launches the image with the
publication's mounts, executes the plan inside it (``execute_notebook`` with the launched
kernel's connection), compares and rebuilds (frozen / fresh) and builds a ``CheckResult``; the
``panbinder check DOI|--all`` command; the nightly scheduler in ``panbinder serve``; the
publication page, overview page, ``/badge/doi/<doi>/reproducible.svg`` and
``/api/publications/<doi>/checks`` routes; Prometheus gauges per verdict; the webhook on a
changed verdict.
"""
