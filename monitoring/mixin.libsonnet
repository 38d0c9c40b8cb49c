// unpod-exporter's monitoring mixin (https://monitoring.mixins.dev conventions):
//   local unpod = (import 'unpod-exporter-mixin/mixin.libsonnet') + {
//     _config+:: { selector: 'job="unpod"', stuckAfterSeconds: 3600 },
//   };
//   unpod.prometheusAlerts, unpod.prometheusRules, unpod.grafanaDashboards
// With the defaults it renders exactly monitoring/alerts.yaml, rules.yaml and
// dashboards/unpod.json (python monitoring/mixin.py writes them; a test compares).
(import 'config.libsonnet')
+ (import 'rules.libsonnet')
+ (import 'alerts.libsonnet')
+ (import 'dashboards.libsonnet')
