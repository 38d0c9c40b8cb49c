// Alerting rules. Summaries are static sentences, descriptions templated (mixtool's lint);
// every expression selects the exporter's job through _config.selector. To add an alert,
// append it to the rules of a group here (or add a group of your own) with alert(...) and
// add its runbook under a heading of the same name in docs/alerts.md.
local where = '{{ $labels.org }}{{ if $labels.space }}/{{ $labels.space }}{{ end }}';

local alert(c, name, expr, duration, severity, summary, description) = {
  alert: name,
  expr: expr,
  'for': duration,
  labels: { severity: severity },
  annotations: {
    summary: summary,
    description: description,
    runbook_url: '%s#%s' % [c.runbookBase, std.asciiLower(name)],
  },
};

// The same condition on space series (org_space: rules) or org-wide ones (org: rules).
local bothLevels(template) =
  '(\n%s\n)\nor\n(\n%s\n)\n' % [
    template % { l: 'org_space', p: 'unpod_', on: 'job, instance, org, space' },
    template % { l: 'org', p: 'unpod_org_', on: 'job, instance, org' },
  ];

local percent(ratio) = '%d%%' % std.round(ratio * 100);
// Numbers in expressions as a person writes them (0.15, not 0.14999999999999999).
local num(x) = '%g' % x;

// A campaign that never starts never shows in the analytics (a run counts only once a task of
// it finished): the backlog scan sees its pending tasks, older than the threshold, while the
// space's progress clock is as old, or absent (its answers never told of a finished task).
local neverStarted(c) = |||
  (
    sum by (job, instance, org, space) (unpod_backlog_tasks{%(sel)s,status="pending"}) > 0
    and on (job, instance, org, space)
    time() - unpod_backlog_oldest_pending_timestamp_seconds{%(sel)s} > %(after)s
    and on (job, instance, org, space)
    (
      org_space:unpod_tasks_last_progress_timestamp_seconds:age > %(after)s
      or on (job, instance, org, space)
      (
        unpod_up{%(sel)s} == 1
        unless on (job, instance, org, space)
        unpod_tasks_last_progress_timestamp_seconds{%(sel)s}
      )
    )
  )
||| % { sel: c.selector, after: num(c.stuckAfterSeconds) };

local alerts(c) =
  local w = c.failureWindow;
  local sel = c.selector;
  local scanWindow = '%ds' % c.scanFailingSeconds;
  [
    alert(c, 'UnpodTasksStuck', bothLevels(
      '  %(l)s:%(p)stasks_unfinished:sum > 0\n  and on (%(on)s)\n'
      + '  %(l)s:%(p)stasks_last_progress_timestamp_seconds:age > ' + num(c.stuckAfterSeconds)
    ) + 'or\n' + neverStarted(c), c.stuckFor, 'warning', 'Unpod tasks are stuck.',
          '{{ $value | humanize }} tasks are pending or running in ' + where
          + ' but no task has finished for over %d minutes.' % std.floor(c.stuckAfterSeconds / 60)),
    alert(c, 'UnpodTasksStuckInProgress',
          'time() - unpod_backlog_oldest_in_progress_timestamp_seconds{%s} > %s\n'
          % [sel, num(c.inProgressAfterSeconds)], c.inProgressFor, 'warning',
          'An Unpod task has been in progress for too long.',
          'A task of ' + where + ' has been in progress for {{ $value | humanizeDuration }}; '
          + "the platform resets such tasks after 15 minutes, so its recovery job is not "
          + 'running.'),
    alert(c, 'UnpodScheduledTasksOverdue',
          'unpod_backlog_overdue_scheduled_tasks{%s} > 0\n' % sel, c.overdueFor, 'warning',
          'Scheduled Unpod tasks are overdue.',
          '{{ $value | humanize }} scheduled tasks of ' + where + ' are past their scheduled '
          + 'time and have not started.'),
    alert(c, 'UnpodBacklogScanFailing', |||
      sum by (job, instance, org, space) (
        increase(unpod_backlog_scan_errors_total{%(sel)s}[%(w)s])
      ) > 0
      unless on (job, instance, org, space)
      time() - unpod_backlog_scan_last_success_timestamp_seconds{%(sel)s} < %(s)s
    ||| % { sel: sel, w: scanWindow, s: num(c.scanFailingSeconds) }, scanWindow, 'warning',
          "The exporter cannot scan an Unpod space's backlog.",
          'Every backlog scan of ' + where + ' failed for %d minutes; see '
            % std.floor(c.scanFailingSeconds / 60)
          + 'unpod_backlog_scan_errors_total for the reason.'),
    alert(c, 'UnpodCallFailureRateHigh', bothLevels(
      '  %(l)s:%(p)scalls_failed_per_call:ratio' + w + ' > ' + num(c.failureRatioThreshold)
      + '\n  and on (%(on)s)\n  %(l)s:%(p)scalls:delta' + w + ' >= ' + num(c.failureMinCalls)
    ), c.failureFor, 'warning', 'Many Unpod calls are failing.',
          '{{ $value | humanizePercentage }} of the calls of the last ' + w + ' in ' + where
          + ' failed (threshold %s, at least %d calls).'
            % [percent(c.failureRatioThreshold), c.failureMinCalls]),
    alert(c, 'UnpodCallSuccessRatioDropping', bothLevels(
      '  %(l)s:%(p)scalls_completed_per_call:ratio' + w
      + '\n  < (%(l)s:%(p)scalls_completed_per_call:ratio' + w + ' offset 1d) - ' + num(c.successDrop)
      + '\n  and on (%(on)s)\n  %(l)s:%(p)scalls:delta' + w + ' >= ' + num(c.failureMinCalls)
    ), c.successFor, 'warning', 'The Unpod call success ratio is dropping.',
          'The success ratio of the last ' + w + ' in ' + where
          + ' is {{ $value | humanizePercentage }}, more than %s below the same hour yesterday.'
            % percent(c.successDrop)),
    alert(c, 'UnpodTargetDown', 'unpod_up{%s} == 0\n' % sel, c.targetDownFor, 'warning',
          'The exporter cannot poll an Unpod target.',
          'The last polls of ' + where + ' failed; see unpod_poll_errors_total for the '
          + "reason and the exporter's landing page for the last error."),
    alert(c, 'UnpodDataStale',
          'time() - unpod_last_success_timestamp_seconds{%s} > %s\n' % [sel, num(c.staleAfterSeconds)],
          '0m', 'warning', 'Unpod analytics are stale.',
          'The last successful poll of ' + where + ' was {{ $value | humanizeDuration }} ago.'),
    alert(c, 'UnpodAuthenticationFailing', |||
      sum by (job, instance, org) (
        increase(unpod_poll_errors_total{%(sel)s,reason=~"unauthorized|forbidden"}[%(w)s])
      ) > 0
      unless on (job, instance, org)
      max by (job, instance, org) (unpod_up{%(sel)s}) == 1
    ||| % { sel: sel, w: c.authWindow }, '0m', 'critical',
          "The Unpod API rejects the exporter's token.",
          'The Unpod API answers 401/403 for {{ $labels.org }}: the token is invalid, expired '
          + 'or lacks access to the organization. The exporter backs off (up to an hour).'),
    alert(c, 'UnpodRateLimited', |||
      sum by (job, instance, org) (
        increase(unpod_api_requests_total{%(sel)s,outcome="rate_limited"}[%(w)s])
      ) > 0
    ||| % { sel: sel, w: c.rateLimitedWindow }, c.rateLimitedFor, 'warning',
          'The Unpod API rate-limits the exporter.',
          'The Unpod API answered 429 {{ $value | humanize }} times in the last '
          + c.rateLimitedWindow + ' for {{ $labels.org }}; lower api.max_requests_per_minute '
          + 'or raise the poll interval.'),
    alert(c, 'UnpodExporterConfigReloadFailed',
          'unpod_exporter_config_last_reload_successful{%s} == 0\n' % sel, c.reloadFailedFor,
          'warning', 'The unpod-exporter config reload failed.',
          'The last config reload of {{ $labels.instance }} failed; the previous config is '
          + "still running. See the exporter's log."),
    alert(c, 'UnpodExporterDown', 'up{%(sel)s} == 0 or absent(up{%(sel)s})\n' % { sel: sel },
          c.exporterDownFor, 'critical', 'Prometheus cannot scrape unpod-exporter.',
          'Prometheus cannot scrape unpod-exporter ({{ $labels.instance }}): no Unpod data '
          + 'and no Unpod alerts.'),
  ];

{
  prometheusAlerts+:: {
    groups+: [{ name: 'unpod.alerts', rules: alerts($._config) }],
  },
}
