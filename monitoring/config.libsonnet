// The mixin's settings. Override any of them from your own jsonnet:
//   (import 'unpod-exporter-mixin/mixin.libsonnet') + { _config+:: { selector: 'job="unpod"' } }
{
  _config+:: {
    // The one selector of the exporter's job: every rule, alert and dashboard query uses it,
    // so a second job scraping /probe is never counted twice.
    selector: 'job="unpod-exporter"',
    runbookBase: 'https://github.com/unpod-exporter/unpod-exporter/blob/main/docs/alerts.md',
    // Stuck tasks: unfinished work while finished tasks did not grow for this long.
    stuckAfterSeconds: 1800,
    stuckFor: '5m',
    // Failure rate: share of failed calls over the window, only above a minimum volume.
    failureWindow: '1h',
    failureRatioThreshold: 0.25,
    failureMinCalls: 20,
    failureFor: '15m',
    // Success ratio dropping: this window's ratio below the same window a day earlier, by this.
    successDrop: 0.15,
    successFor: '30m',
    // Backlog scan: a task in progress this long means the platform's own 15-minute recovery
    // is not running; scheduled tasks overdue this long; every scan failed this long.
    inProgressAfterSeconds: 1800,
    inProgressFor: '5m',
    overdueFor: '15m',
    scanFailingSeconds: 1800,
    // Health.
    targetDownFor: '10m',
    staleAfterSeconds: 1800,
    authWindow: '1h',
    rateLimitedWindow: '15m',
    rateLimitedFor: '15m',
    reloadFailedFor: '5m',
    exporterDownFor: '5m',
    // Task statuses that count as unfinished work.
    unfinishedStatuses: 'pending|running|in_progress|processing',
    // Dashboard.
    dashboardUid: 'unpod-exporter',
    dashboardTitle: 'Unpod campaigns',
    dashboardTags: ['unpod'],
  },
}
