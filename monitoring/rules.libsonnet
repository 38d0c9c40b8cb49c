// Recording rules, named level:metric:operations (Prometheus's recording-rule convention):
// org_space: rules keep a space's labels, org: rules an org-wide target's. Space and org-wide
// figures never share a name, so no rule adds an organization's total to its own spaces.
local levels(c) = [
  // [level, metric prefix, labels that identify a target]
  ['org_space', 'unpod_', 'org, space'],
  ['org', 'unpod_org_', 'org'],
];

local rulesOf(c, level, prefix, by) =
  local w = c.failureWindow;
  local sel = c.selector;
  [
    {
      record: '%s:%scalls:delta%s' % [level, prefix, w],
      expr: 'clamp_min(delta(%scalls{%s}[%s]), 0)' % [prefix, sel, w],
    },
    {
      record: '%s:%scalls_completed:delta%s' % [level, prefix, w],
      expr: 'clamp_min(delta(%scalls_completed{%s}[%s]), 0)' % [prefix, sel, w],
    },
    {
      record: '%s:%scalls_failed:delta%s' % [level, prefix, w],
      expr: 'clamp_min(delta(%scalls_failed{%s}[%s]), 0)' % [prefix, sel, w],
    },
    {
      record: '%s:%scalls_failed_per_call:ratio%s' % [level, prefix, w],
      expr: '%(l)s:%(p)scalls_failed:delta%(w)s / (%(l)s:%(p)scalls:delta%(w)s > 0)'
            % { l: level, p: prefix, w: w },
    },
    {
      record: '%s:%scalls_completed_per_call:ratio%s' % [level, prefix, w],
      expr: 'clamp_max(%(l)s:%(p)scalls_completed:delta%(w)s / (%(l)s:%(p)scalls:delta%(w)s > 0), 1)'
            % { l: level, p: prefix, w: w },
    },
    {
      record: '%s:%stasks_unfinished:sum' % [level, prefix],
      expr: 'sum by (job, instance, %s) (%stasks_by_status{%s,status=~"%s"})'
            % [by, prefix, sel, c.unfinishedStatuses],
    },
    {
      record: '%s:%stasks_last_progress_timestamp_seconds:age' % [level, prefix],
      expr: 'time() - %stasks_last_progress_timestamp_seconds{%s}' % [prefix, sel],
    },
  ];

{
  prometheusRules+:: {
    groups+: [{
      name: 'unpod.rules',
      rules: std.flattenArrays([rulesOf($._config, l[0], l[1], l[2]) for l in levels($._config)]),
    }],
  },
}
