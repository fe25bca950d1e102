{{/* Relabelings shared by the PodMonitor and ServiceMonitor: the node a classifier runs on and
     the DistilledModel it serves become labels of every series (bounded: one per node / model). */}}
{{- define "logdistill.scrapeRelabelings" -}}
- sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
- sourceLabels: [{{ printf "__meta_kubernetes_pod_label_%s" (regexReplaceAll "[^a-zA-Z0-9_]" .Values.metrics.modelLabel "_") }}]
  targetLabel: distilledmodel
- sourceLabels: [__meta_kubernetes_namespace]
  targetLabel: namespace
- sourceLabels: [__meta_kubernetes_pod_name]
  targetLabel: pod
{{- end -}}

{{- define "logdistill.namespaceSelector" -}}
{{- if .Values.operator.watchNamespaces }}
matchNames:
  {{- toYaml .Values.operator.watchNamespaces | nindent 2 }}
{{- else }}
any: true
{{- end }}
{{- end -}}
