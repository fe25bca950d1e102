{{/* Generated from operator/rbac.py by hack/generate.py: do not edit (a test fails on drift). */}}
{{- define "logdistill.rules.operator" -}}
- apiGroups:
  - logdistill.io
  resources:
  - distilledmodels
  verbs:
  - get
  - list
  - watch
  - patch
- apiGroups:
  - logdistill.io
  resources:
  - distilledmodels/status
  verbs:
  - get
  - patch
- apiGroups:
  - logdistill.io
  resources:
  - distilledmodels/finalizers
  verbs:
  - update
- apiGroups:
  - batch
  resources:
  - jobs
  verbs:
  - get
  - list
  - watch
  - create
  - delete
- apiGroups:
  - ''
  resources:
  - pods
  verbs:
  - get
  - list
  - watch
- apiGroups:
  - ''
  resources:
  - pods/log
  verbs:
  - get
- apiGroups:
  - ''
  resources:
  - configmaps
  verbs:
  - create
- apiGroups:
  - ''
  resources:
  - persistentvolumeclaims
  verbs:
  - get
- apiGroups:
  - ''
  resources:
  - services
  verbs:
  - list
  - create
  - delete
- apiGroups:
  - ''
  resources:
  - secrets
  verbs:
  - create
- apiGroups:
  - networking.k8s.io
  resources:
  - networkpolicies
  verbs:
  - get
  - create
  - update
  - delete
- apiGroups:
  - apps
  resources:
  - daemonsets
  verbs:
  - get
  - list
  - watch
  - create
  - update
- apiGroups:
  - apps
  resources:
  - deployments
  verbs:
  - get
  - list
  - create
  - update
  - delete
- apiGroups:
  - ''
  resources:
  - events
  verbs:
  - create
  - list
- apiGroups:
  - kopf.dev
  resources:
  - kopfpeerings
  verbs:
  - get
  - list
  - watch
  - patch
  - create
{{- end }}
{{- define "logdistill.rules.claims" -}}
- apiGroups:
  - ''
  resources:
  - persistentvolumeclaims
  verbs:
  - create
{{- end }}
{{- define "logdistill.rules.clusterWide" -}}
- apiGroups:
  - kopf.dev
  resources:
  - clusterkopfpeerings
  verbs:
  - get
  - list
  - watch
  - patch
  - create
{{- end }}
{{- define "logdistill.rules.namespaceGlobs" -}}
- apiGroups:
  - ''
  resources:
  - namespaces
  verbs:
  - list
  - watch
- apiGroups:
  - apiextensions.k8s.io
  resources:
  - customresourcedefinitions
  verbs:
  - list
  - watch
{{- end }}
{{- define "logdistill.rules.hostPath" -}}
- apiGroups:
  - ''
  resources:
  - persistentvolumes
  verbs:
  - get
  - create
{{- end }}
