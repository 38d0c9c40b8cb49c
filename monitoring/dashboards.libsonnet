// The Grafana dashboard, built to pass Grafana's dashboard-linter: a templated data source,
// job and instance variables (multi, "All" = .+) that every query selects, a description and
// a unit on every panel, $__rate_interval in rate(), counters only under rate()/increase(),
// not editable. To add panels, add a row to `rows` below (or append one from your own jsonnet
// through dashboardRows): positions are laid out from the rows' order and the panels' sizes.
local ds = { type: 'prometheus', uid: '${datasource}' };
local window = '$__rate_interval';
// The variables' matchers and the mixin's selector: "All" is .+ (the linter wants it so), and
// the selector keeps a second job (one scraping /probe) out of "All" all the same.
local selectors(c) = {
  exporter: 'job=~"$job",instance=~"$instance",' + c.selector,
  targets: self.exporter + ',org=~"$org"',  // every target: health counts targets, not totals
  orgs: self.targets,  // org-wide analytics (unpod_org_*)
  spaces: self.targets + ',space=~"$space"',  // space analytics (unpod_*)
};

local publishedOnly = 'Published shape only (completed_calls, avg_duration_seconds): targets '
                      + 'that answer Unpod\'s platform shape show No data here.';
local platformOnly = 'Platform shape only (call_analytics): targets that answer the published '
                     + 'shape show No data here.';

local panel(title, kind, exprs, w, h, description, unit='short', stacked=false) = {
  type: kind,
  title: title,
  description: description,
  datasource: ds,
  w:: w,
  h:: h,
  fieldConfig: {
    defaults: { unit: unit } + (
      if kind == 'timeseries' then {
        custom: { stacking: { mode: if stacked then 'normal' else 'none' },
                  fillOpacity: if stacked then 30 else 10 },
      } else {}
    ),
    overrides: [],
  },
  options: if kind == 'timeseries' then { legend: { displayMode: 'list', placement: 'bottom' } }
  else { reduceOptions: { calcs: ['lastNotNull'] } },
  targets: [
    { refId: std.char(65 + i), datasource: ds, expr: exprs[i][0], legendFormat: exprs[i][1] }
    for i in std.range(0, std.length(exprs) - 1)
  ],
};

local variable(name, query, label) = {
  name: name,
  label: label,
  type: 'query',
  datasource: ds,
  query: { query: query, refId: '%s-variable' % name },
  definition: query,
  refresh: 2,
  includeAll: true,
  allValue: '.+',
  multi: true,
  sort: 1,
  current: { selected: true, text: ['All'], value: ['$__all'] },
};

local rows(c) =
  local s = selectors(c);
  local targets = s.targets, orgs = s.orgs, spaces = s.spaces;
  [
  {
    title: 'Organizations (org-wide totals)',
    panels: [
      panel('Calls per interval', 'timeseries', [
        ['clamp_min(delta(unpod_org_calls{%s}[%s]), 0)' % [orgs, window], '{{org}} calls'],
        ['clamp_min(delta(unpod_org_calls_failed{%s}[%s]), 0)' % [orgs, window], '{{org}} failed'],
      ], 12, 8, "New calls and failures per interval of each organization (delta of Unpod's all-time gauges)."),
      panel('Success ratio', 'stat', [
        ['unpod_org_call_success_ratio{%s}' % orgs, '{{org}}'],
      ], 6, 8, 'Completed calls over all calls of each organization. ' + publishedOnly, 'percentunit'),
      panel('Calls (last hour)', 'stat', [
        ['clamp_min(delta(unpod_org_calls{%s}[1h]), 0)' % orgs, '{{org}}'],
      ], 6, 8, 'Calls made by each organization in the last hour.'),
    ],
  },
  {
    title: 'Spaces',
    panels: [
      panel('Calls and failures by space', 'timeseries', [
        ['clamp_min(delta(unpod_calls{%s}[%s]), 0)' % [spaces, window], '{{org}}/{{space}}'],
        ['clamp_min(delta(unpod_calls_failed{%s}[%s]), 0)' % [spaces, window], '{{org}}/{{space}} failed'],
      ], 12, 8, 'New calls and failures per interval of each space.'),
      panel('Success ratio by space', 'timeseries', [
        ['unpod_call_success_ratio{%s}' % spaces, '{{org}}/{{space}}'],
      ], 12, 8, 'Completed calls over all calls of each space. ' + publishedOnly, 'percentunit'),
      panel('Average call duration', 'timeseries', [
        ['unpod_call_average_duration_seconds{%s}' % spaces, '{{org}}/{{space}}'],
      ], 12, 8, 'Average duration of the calls of each space. ' + publishedOnly, 's'),
      panel('Tasks by status', 'timeseries', [
        ['sum by (status) (unpod_tasks_by_status{%s})' % spaces, '{{status}}'],
      ], 12, 8, 'Tasks of the selected spaces by status, stacked.', stacked=true),
      panel('Stuck-task age', 'timeseries', [
        ['(time() - unpod_tasks_last_progress_timestamp_seconds{%s}) ' % spaces
         + 'and on (job, instance, org, space) '
         + '(sum by (job, instance, org, space) (unpod_tasks_by_status{%s,status=~"%s"}) > 0)'
           % [spaces, c.unfinishedStatuses], '{{org}}/{{space}}'],
      ], 24, 8, 'Time since finished tasks last grew, for spaces with unfinished tasks.', 's'),
    ],
  },
  {
    title: 'Backlog (what is waiting, from the backlog scan)',
    panels: [
      panel('Pending tasks by space', 'timeseries', [
        ['sum by (org, space) (unpod_backlog_tasks{%s,status="pending"})' % spaces, '{{org}}/{{space}}'],
      ], 8, 8, 'Pending tasks of the open runs of each space, seen at the task level (live, '
               + 'unlike the analytics).'),
      panel('Oldest pending task age', 'timeseries', [
        ['time() - unpod_backlog_oldest_pending_timestamp_seconds{%s}' % spaces, '{{org}}/{{space}}'],
      ], 8, 8, 'Age of the oldest pending task of each space: a campaign that never starts '
               + 'grows here while its analytics stay empty.', 's'),
      panel('Longest in progress', 'timeseries', [
        ['time() - unpod_backlog_oldest_in_progress_timestamp_seconds{%s}' % spaces, '{{org}}/{{space}}'],
      ], 8, 8, 'Time since the longest-running task entered in_progress or processing; over '
               + "15 minutes means the platform's recovery is not running.", 's'),
      panel('Open runs', 'timeseries', [
        ['unpod_backlog_open_runs{%s}' % spaces, '{{org}}/{{space}}'],
      ], 6, 8, 'Runs whose status is not terminal.'),
      panel('Overdue scheduled and retried tasks', 'timeseries', [
        ['unpod_backlog_overdue_scheduled_tasks{%s}' % spaces, '{{org}}/{{space}} overdue'],
        ['unpod_backlog_retried_tasks{%s}' % spaces, '{{org}}/{{space}} retried'],
      ], 6, 8, 'Scheduled tasks past their time, and unfinished tasks with retry_attempt above 0.'),
      panel('Scan complete', 'stat', [
        ['min by (org, space) (unpod_backlog_scan_complete{%s})' % spaces, '{{org}}/{{space}}'],
      ], 6, 8, '1 when the last scan read everything; 0 when backlog.max_requests_per_scan cut '
               + 'it short (raise it or backlog.page_size).'),
      panel('Scan errors by reason', 'timeseries', [
        ['sum by (reason) (increase(unpod_backlog_scan_errors_total{%s}[%s]))' % [spaces, window], '{{reason}}'],
      ], 6, 8, 'Failed backlog scans per interval by reason.'),
    ],
  },
  {
    title: 'Exporter health',
    panels: [
      panel('Targets up', 'timeseries', [
        ['unpod_up{%s}' % targets, '{{org}} {{space}}'],
      ], 8, 8, '1 while the last poll of a target (an org-wide target has no space) succeeded.'),
      panel('Last success age', 'timeseries', [
        ['time() - unpod_last_success_timestamp_seconds{%s}' % targets, '{{org}} {{space}}'],
      ], 8, 8, 'Time since the last successful poll of each target.', 's'),
      panel('Poll errors by reason', 'timeseries', [
        ['sum by (reason) (increase(unpod_poll_errors_total{%s}[%s]))' % [targets, window], '{{reason}}'],
      ], 8, 8, 'Failed polls per interval by their final reason.'),
      panel('Poll duration', 'timeseries', [
        ['unpod_poll_duration_seconds{%s}' % targets, '{{org}} {{space}}'],
      ], 8, 8, 'Duration of the last poll of each target.', 's'),
      panel('API requests by outcome', 'timeseries', [
        ['sum by (outcome) (rate(unpod_api_requests_total{%s}[%s]))' % [targets, window], '{{outcome}}'],
      ], 8, 8, 'Requests to the Unpod API per second by outcome, retries included.', 'reqps'),
      panel('Effective poll interval', 'timeseries', [
        ['unpod_exporter_poll_interval_seconds{%s}' % targets, '{{org}}'],
      ], 8, 8, 'Poll interval of each organization once the request budget is applied.', 's'),
    ],
  },
  {
    title: 'Outcomes and tasks',
    panels: [
      panel('Call outcomes by space', 'bargauge', [
        ['sum by (org, space, outcome) (unpod_calls_by_outcome{%s})' % spaces, '{{org}}/{{space}} {{outcome}}'],
      ], 12, 10, 'All-time calls by outcome (interested, call back, send details, not '
                 + 'interested, not connected, failed). ' + platformOnly),
      panel('Task success ratio by space', 'timeseries', [
        ['unpod_task_success_ratio{%s}' % spaces, '{{org}}/{{space}}'],
      ], 12, 10, 'Completed tasks over all tasks (0..1), from either shape.', 'percentunit'),
    ],
  },
];

// Rows and their panels placed top to bottom, panels left to right, wrapping at 24 columns.
local layout(rowList) =
  local placeRow(state, row) =
    local header = { type: 'row', title: row.title, collapsed: false, panels: [],
                     gridPos: { x: 0, y: state.y, w: 24, h: 1 } };
    local placed = std.foldl(function(s, p)
      local wrap = s.x + p.w > 24;
      local x = if wrap then 0 else s.x;
      local y = if wrap then s.y + s.lineH else s.y;
      {
        x: x + p.w,
        y: y,
        lineH: if wrap then p.h else std.max(s.lineH, p.h),
        panels: s.panels + [p { gridPos: { x: x, y: y, w: p.w, h: p.h } }],
      }, row.panels, { x: 0, y: state.y + 1, lineH: 0, panels: [] });
    { y: placed.y + placed.lineH, panels: state.panels + [header] + placed.panels };
  local all = std.foldl(placeRow, rowList, { y: 0, panels: [] }).panels;
  [all[i] { id: i + 1 } for i in std.range(0, std.length(all) - 1)];

{
  // Rows of the dashboard; extend with `dashboardRows+:: [ { title: ..., panels: [...] } ]`.
  dashboardRows+:: rows($._config),
  grafanaDashboards+:: {
    'unpod.json': {
      uid: $._config.dashboardUid,
      title: $._config.dashboardTitle,
      tags: $._config.dashboardTags,
      schemaVersion: 39,
      version: 1,
      editable: false,
      timezone: 'browser',
      time: { from: 'now-6h', to: 'now' },
      refresh: '1m',
      annotations: { list: [] },
      templating: { list: [
        { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus',
          current: {}, hide: 0 },
        variable('job', 'label_values(unpod_exporter_build_info{%s}, job)' % $._config.selector, 'Job'),
        variable('instance', 'label_values(unpod_exporter_build_info{job=~"$job",%s}, instance)'
                             % $._config.selector, 'Instance'),
        variable('org', 'label_values(unpod_up{%s}, org)' % selectors($._config).exporter,
                 'Organization'),
        variable('space', 'label_values(unpod_up{%s,org=~"$org"}, space)'
                          % selectors($._config).exporter, 'Space'),
      ] },
      panels: layout($.dashboardRows),
    },
  },
}
