{{- define "unpod-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "unpod-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "unpod-exporter.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "unpod-exporter.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "unpod-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "unpod-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "unpod-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "unpod-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The token Secret: the user's existing one, or the one this chart creates. */}}
{{- define "unpod-exporter.tokenSecret" -}}
{{- .Values.token.existingSecret | default (printf "%s-token" (include "unpod-exporter.fullname" .)) }}
{{- end }}

{{- define "unpod-exporter.webhookSecret" -}}
{{- .Values.webhook.secret.existingSecret | default (printf "%s-webhook" (include "unpod-exporter.fullname" .)) }}
{{- end }}

{{- define "unpod-exporter.webConfigSecret" -}}
{{- .Values.webConfig.existingSecret | default (printf "%s-web" (include "unpod-exporter.fullname" .)) }}
{{- end }}

{{/* The exporter config: the user's, with the mounted token file as token source by default. */}}
{{- define "unpod-exporter.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $api := default dict $config.api }}
{{- if not (or (hasKey $api "token") (hasKey $api "token_env") (hasKey $api "token_file")) }}
{{- $_ := set $api "token_file" (printf "/etc/unpod-exporter/token/%s" .Values.token.existingSecretKey) }}
{{- end }}
{{- $_ := set $config "api" $api }}
{{- if .Values.webhook.enabled }}
{{- $webhook := dict "listen_address" (printf ":%d" (int .Values.webhook.port)) "path" .Values.webhook.path "secret_header" .Values.webhook.secretHeader "secret_file" (printf "/etc/unpod-exporter/webhook/%s" .Values.webhook.secret.existingSecretKey) }}
{{- with .Values.webhook.agents }}
{{- $_ := set $webhook "agents" . }}
{{- end }}
{{- $_ := set $config "webhook" $webhook }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "unpod-exporter.scheme" -}}
{{- if and .Values.webConfig.enabled (hasKey .Values.webConfig.content "tls_server_config") }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* An Alertmanager matcher string (severity="critical", alertname=~"A|B") as an
AlertmanagerConfig matcher object. */}}
{{- define "unpod-exporter.matcher" -}}
{{- $op := regexFind "=~|!~|!=|=" . -}}
{{- $parts := regexSplit $op . 2 -}}
- name: {{ index $parts 0 | trim }}
  value: {{ index $parts 1 | trim | trimPrefix "\"" | trimSuffix "\"" | quote }}
  matchType: {{ $op | quote }}
{{- end -}}
