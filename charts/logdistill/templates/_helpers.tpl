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

{{/* The operator's permissions, shared by the ClusterRole (all namespaces) and the per-namespace Roles.
     Each rule names only what the operator does; see docs/quickstart-cluster.md#permissions. */}}
{{- define "logdistill.namespacedRules" -}}
# The custom resource: watch it, patch its status, and a finalizer only where external artifacts must go.
- apiGroups: ["logdistill.io"]
  resources: ["distilledmodels"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["logdistill.io"]
  resources: ["distilledmodels/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["logdistill.io"]
  resources: ["distilledmodels/finalizers"]
  verbs: ["update"]
# The distillation Job per spec generation (deletion cascades by owner reference, but a superseded run is deleted).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The Job's pod: its termination message carries the result summary. Read only.
- apiGroups: [""]
  resources: ["pods", "pods/status"]
  verbs: ["get", "list", "watch"]
# A running Job's progress lines, from its log tail (the Job's pods need no API access to report).
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# The artifacts claim a DistilledModel mounts: read (is it an operator-made hostPath one?), and
# created when missing (artifacts.create). Never deleted: it keeps trained teachers other runs reuse.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"{{ if include "logdistill.createClaims" . }}, "create"{{ end }}]
# The spec mounted into the Job.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# The classifier rollout and its metrics Service; the teacher service (escalation) and the
# rendezvous Service of a distributed run (job.workers > 1).
- apiGroups: ["apps"]
  resources: ["daemonsets", "deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# The bearer token Secret of each DistilledModel's APIs: created once, never read back (pods mount it).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
# The teacher's NetworkPolicy: only the model's classifier pods reach its API port.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "update", "delete"]
# Events on every transition (kopf posts core/v1 events); a stuck pod's Warning events are read
# (FailedMount, a failing readiness probe) to say why in the status.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch", "get", "list"]
# kopf peering (namespaced), so two replicas never act at once.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
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
