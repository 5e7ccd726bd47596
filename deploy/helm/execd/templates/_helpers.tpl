{{- define "execd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "execd.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "execd.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "execd.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
{{- end -}}

{{- define "execd.coordinatorURL" -}}
{{ printf "http://%s-coordinator:%d" (include "execd.fullname" .) (int .Values.coordinator.port) }}
{{- end -}}

{{- define "execd.query" -}}
{{- if .Values.keda.prometheus.query -}}
{{ .Values.keda.prometheus.query }}
{{- else -}}
{{ printf "sum(max by (queue) (src_executors_queue_size{queue=~\"%s\"}))" (join "|" .Values.executors.queues) }}
{{- end -}}
{{- end -}}
