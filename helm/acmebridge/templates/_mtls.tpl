{{/* Workload mTLS (mtls.enabled): names and the operator's flags. docs/mtls.md explains them. */}}

{{- define "acmebridge.webhookService" -}}
{{- printf "%s-webhook" (include "acmebridge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The MutatingWebhookConfiguration; its serving material is the Secret "<this>-webhook-tls". */}}
{{- define "acmebridge.webhookConfiguration" -}}
{{- include "acmebridge.fullname" . }}
{{- end }}

{{/*
The namespaces the webhooks never see: kube-system, and the operator's own namespaces, so that
the webhook can never keep the Pods that serve it from starting. The same list as the operator
computes (reconcile/webhook_serving.py, WebhookServing.excluded).
*/}}
{{- define "acmebridge.webhookExcluded" -}}
{{- list "kube-system" .Release.Namespace (include "acmebridge.clusterResourceNamespace" .) | uniq | sortAlpha | toJson }}
{{- end }}

{{- define "acmebridge.mtlsArgs" -}}
{{- if .Values.mtls.enabled }}
- --mtls
- {{ printf "--webhook-port=%d" (int .Values.mtls.webhookPort) | quote }}
- {{ printf "--webhook-service=%s/%s" .Release.Namespace (include "acmebridge.webhookService" .) | quote }}
- {{ printf "--webhook-configuration=%s" (include "acmebridge.webhookConfiguration" .) | quote }}
{{- if not (kindIs "invalid" .Values.mtls.webhookCertDurationSeconds) }}
- {{ printf "--webhook-cert-duration=%v" .Values.mtls.webhookCertDurationSeconds | quote }}
{{- end }}
{{- with .Values.mtls.dnsNamesTemplate }}
- {{ printf "--workload-dns-names-template=%s" . | quote }}
{{- end }}
- {{ printf "--workload-duration=%s" .Values.mtls.duration | quote }}
- {{ printf "--spiffe-trust-domain=%s" .Values.mtls.spiffeTrustDomain | quote }}
- {{ printf "--cluster-domain=%s" .Values.mtls.clusterDomain | quote }}
{{- end }}
{{- end }}
