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
- ``runner``: one publication's check, step by step (archive verified or the image restored
  from it, launch through the Hub as a reader, the plan run inside the launched container by
  ``in_container``, outputs compared, frozen rebuild through ``panbinder/rebuilds.py`` with the
  command's own build queue), and its ``CheckResult``; ``restore`` puts a lost image back from
  the archive.
- ``scheduler``: ``check_and_record`` (shared by ``panbinder check``) and the nightly round in
  ``panbinder serve`` (``CheckScheduler``); ``notify``: the webhook on a changed verdict;
  ``gauges``: ``panbinder_check_verdicts`` on /metrics.

- ``kept``: the notebooks of each publication's last check, as stored and as executed
  (``KeptNotebooks``, bounded), which the publication page shows read-only.

The command is ``panbinder/check_cli.py``; the routes are ``web/api/checks.py`` (a
publication's checks, the overview's JSON), ``web/handlers/reproducible.py`` (the badge, the
``/reproducibility`` overview) and ``web/handlers/notebooks.py`` (the notebooks, rendered inert
by ``web/notebook_html.py``). Still to do: the benchmark.
"""
