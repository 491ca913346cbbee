{{/* The chart name, or nameOverride. */}}
{{- define "sentinel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's resources (63 characters at most, a DNS label). */}}
{{- define "sentinel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sentinel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sentinel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sentinel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sentinel.labels" -}}
helm.sh/chart: {{ include "sentinel.chart" . }}
{{ include "sentinel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "sentinel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sentinel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sentinel.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret and key holding the Slack token; empty when there is none. */}}
{{- define "sentinel.slackSecretName" -}}
{{- if .Values.slack.existingSecret }}
{{- .Values.slack.existingSecret }}
{{- else if .Values.slack.token }}
{{- printf "%s-slack" (include "sentinel.fullname" .) }}
{{- end }}
{{- end }}

{{- define "sentinel.slackSecretKey" -}}
{{- if .Values.slack.existingSecret }}
{{- .Values.slack.existingSecretKey }}
{{- else }}
{{- "token" }}
{{- end }}
{{- end }}

{{/* Values that contradict each other stop the render with a sentence saying why. */}}
{{- define "sentinel.validate" -}}
{{- if and .Values.slack.token .Values.slack.existingSecret }}
{{- fail "slack.token and slack.existingSecret are both set: give one (the token in your own Secret is the safer)" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (or .Values.actions.evict.enabled .Values.actions.deletePod.enabled) }}
{{- fail "actions.evict and actions.deletePod need mode: daemonset (a sidecar restarts its app in place and needs no eviction rights)" }}
{{- end }}
{{- end }}
