{{/* Chart name, overridable. */}}
{{- define "logdistill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "logdistill.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "logdistill.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "logdistill.labels" -}}
helm.sh/chart: {{ include "logdistill.chart" . }}
{{ include "logdistill.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: logdistill
{{- end -}}

{{/* Labels that select the operator pod. */}}
{{- define "logdistill.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logdistill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "logdistill.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "logdistill.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "logdistill.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "logdistill.edgeImage" -}}
{{- printf "%s:%s" .Values.edgeImage.repository (default .Chart.AppVersion .Values.edgeImage.tag) -}}
{{- end -}}

{{/* The images a DistilledModel may set (admissionPolicy.imagePrefixes plus the chart's own repositories), a
     JSON list: the ValidatingAdmissionPolicy's variable and the operator's --allowed-image-prefix flags. */}}
{{- define "logdistill.admissionImagePrefixes" -}}
{{- concat (list .Values.image.repository .Values.edgeImage.repository) .Values.admissionPolicy.imagePrefixes | uniq | toJson -}}
{{- end -}}

{{/* The claim DistilledModels without a claimName use. */}}
{{- define "logdistill.defaultClaim" -}}
{{- default "logdistill-artifacts" .Values.artifacts.existingClaim -}}
{{- end -}}

{{/* Whether the operator creates missing claims: "true" or "". */}}
{{- define "logdistill.createClaims" -}}
{{- if and .Values.artifacts.create (not .Values.artifacts.existingClaim) -}}true{{- end -}}
{{- end -}}

{{/* Root of the hostPath PersistentVolumes behind created claims, or "" (dynamic provisioning).
     auto: /var/lib/logdistill/artifacts when no storageClassName is set and the cluster has no
     StorageClass annotated as the default (Helm lookup; empty under `helm template`). */}}
{{- define "logdistill.artifactsHostPath" -}}
{{- $a := .Values.artifacts -}}
{{- if include "logdistill.createClaims" . -}}
{{- if eq $a.hostPath "auto" -}}
{{- if not $a.storageClassName -}}
{{- $hasDefault := false -}}
{{- $classes := lookup "storage.k8s.io/v1" "StorageClass" "" "" -}}
{{- range (get ($classes | default dict) "items" | default list) -}}
{{- $ann := .metadata.annotations | default dict -}}
{{- if or (eq (get $ann "storageclass.kubernetes.io/is-default-class") "true") (eq (get $ann "storageclass.beta.kubernetes.io/is-default-class") "true") -}}
{{- $hasDefault = true -}}
{{- end -}}
{{- end -}}
{{- if not $hasDefault -}}/var/lib/logdistill/artifacts{{- end -}}
{{- end -}}
{{- else -}}
{{- $a.hostPath -}}
{{- end -}}
{{- end -}}
{{- end -}}
