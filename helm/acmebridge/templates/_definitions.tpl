{{/* Names, labels and the operator's command line, shared by the templates. */}}

{{- define "acmebridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; a release called "acmebridge" is just "acmebridge". */}}
{{- define "acmebridge.fullname" -}}
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

{{- define "acmebridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acmebridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "acmebridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "acmebridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "acmebridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "acmebridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "acmebridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "acmebridge.clusterResourceNamespace" -}}
{{- default .Release.Namespace .Values.clusterResourceNamespace }}
{{- end }}

{{- define "acmebridge.peeringName" -}}
{{- default (include "acmebridge.fullname" .) .Values.peering.name }}
{{- end }}

{{/* Several replicas share the work through kopf peering; one replica runs standalone. */}}
{{- define "acmebridge.peered" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/*
`acmebridge run` arguments, one per list item. Every setting is passed as a flag (not an
ACMEBRIDGE_* variable) so that `kubectl describe pod` shows the whole configuration.
*/}}
{{- define "acmebridge.args" -}}
- run
{{- range .Values.namespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
- {{ printf "--cluster-resource-namespace=%s" (include "acmebridge.clusterResourceNamespace" .) | quote }}
- {{ printf "--solver-image=%s" (default (include "acmebridge.image" .) .Values.solverImage) | quote }}
{{- range .Values.allowedACMEServers }}
- {{ printf "--allowed-acme-server=%s" . | quote }}
{{- end }}
{{- if .Values.secretOwnerReferences }}
- --secret-owner-references
{{- end }}
- {{ printf "--backoff-cap=%v" .Values.backoffCapSeconds | quote }}
- {{ printf "--concurrency=%d" (int .Values.concurrency) | quote }}
{{- if not (kindIs "invalid" .Values.secretCheckIntervalSeconds) }}
- {{ printf "--secret-check-interval=%v" .Values.secretCheckIntervalSeconds | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.orderPollMaxSeconds) }}
- {{ printf "--order-poll-max=%v" .Values.orderPollMaxSeconds | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.ariRecheckMaxSeconds) }}
- {{ printf "--ari-recheck-max=%v" .Values.ariRecheckMaxSeconds | quote }}
{{- end }}
{{- with .Values.dns01.nameservers }}
- {{ printf "--dns01-nameservers=%s" (join "," .) | quote }}
{{- end }}
- {{ printf "--http01-self-check-port=%d" (int .Values.http01.selfCheckPort) | quote }}
{{- range .Values.http01.selfCheckNameservers }}
- {{ printf "--self-check-nameserver=%s" . | quote }}
{{- end }}
- {{ printf "--metrics-port=%d" (int .Values.metrics.port) | quote }}
- {{ printf "--liveness=http://0.0.0.0:%d/healthz" (int .Values.healthPort) | quote }}
- {{ printf "--log-format=%s" .Values.logFormat | quote }}
- {{ printf "--log-level=%s" .Values.logLevel | quote }}
{{- if include "acmebridge.peered" . }}
- {{ printf "--peering=%s" (include "acmebridge.peeringName" .) | quote }}
{{- /* kopf freezes every operator when two peers share a priority: each replica takes its
  StatefulSet ordinal (the highest one is active), expanded by the kubelet from POD_INDEX. */}}
- --priority=$(POD_INDEX)
{{- end }}
{{- include "acmebridge.mtlsArgs" . }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
