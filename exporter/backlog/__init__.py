"""The backlog scan: what is waiting in a space, seen at the task level.

The analytics figures are rewritten only when a task finishes, so a campaign whose tasks never
start never shows in them (unpod-api.md, "Runs and tasks"). The scan looks where work can be
waiting: a space's runs (``spaces/{token}/runs/``), the tasks of its open runs
(``.../runs/{run_id}/tasks/``), and, for the fields those answers strip
(``last_status_change``, ``scheduled_timestamp``, ``retry_attempt``), the raw documents of the
agents of those tasks (``agents/{handle}/tasks/``), read only as far back as the oldest open run.

- ``parse``: what an answer means (pages of small records, times, the 8 MiB bound).
- ``policy``: open runs, paging ends, the per-scan cap, folding tasks into figures, the
  scan interval within the spare budget.
- ``scan``: the requests of one scan, through a ``Fetch`` (the request gate).
- ``snapshot``: the immutable per-space state; ``metrics``: its series.
"""
