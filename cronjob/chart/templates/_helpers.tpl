{{/* The release's full name: the release name, with the chart's name
appended unless it already contains it (Helm's convention). */}}
{{- define "vault-sync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vault-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vault-sync.labels" -}}
{{ include "vault-sync.selectorLabels" . }}
app.kubernetes.io/part-of: vault-sync
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "vault-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "vault-sync.fullname" .) -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest pins it. */}}
{{- define "vault-sync.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Settings that cannot be expressed in values.schema.json, checked
before anything renders so that a mistake fails `helm install` with what
to set, instead of a CronJob whose every run fails. */}}
{{- define "vault-sync.validate" -}}
{{- if not .Values.clusterName -}}
{{- fail "clusterName is required: this cluster's name, unique per Vault (paths go under <mount>/clusters/<name>/). Set it with --set clusterName=<name>." -}}
{{- end -}}
{{- if not .Values.vault.address -}}
{{- fail "vault.address is required: the Vault/OpenBao address as the Pod reaches it, e.g. --set vault.address=https://vault.vault.svc:8200" -}}
{{- end -}}
{{- if and .Values.rbac.create (not .Values.rbac.clusterWide) (not .Values.scope.namespaces) -}}
{{- fail "rbac.clusterWide=false needs scope.namespaces: the namespaces that each get a Role (e.g. --set 'scope.namespaces={apps,payments}')" -}}
{{- end -}}
{{- if and (has .Values.vault.auth.method (list "approle" "token")) (not .Values.vault.auth.secretName) -}}
{{- fail (printf "vault.auth.method=%s needs vault.auth.secretName: an existing Secret holding the credentials" .Values.vault.auth.method) -}}
{{- end -}}
{{- if and .Values.vault.caCert.secretName .Values.vault.caCert.configMapName -}}
{{- fail "vault.caCert: set secretName or configMapName, not both" -}}
{{- end -}}
{{- end -}}

{{/* The rules of cronjob/rbac.yaml, which says what each is for:
read-only, and `list` on Secrets only with readSecrets=list. */}}
{{- define "vault-sync.rules" -}}
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "get"]
- apiGroups: ["batch"]
  resources: ["jobs", "cronjobs"]
  verbs: ["list", "get"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: {{ if eq .Values.readSecrets "list" }}["get", "list"]{{ else }}["get"]{{ end }}
{{- end }}
