{{/* Names: every object is <release>-<part>, at most 63 characters. */}}
{{- define "pb.name" -}}
{{- printf "%s-%s" (.root.Release.Name | trunc 40 | trimSuffix "-") .part | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pb.labels" -}}
app.kubernetes.io/name: panbinder
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .part }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "pb.selector" -}}
app.kubernetes.io/name: panbinder
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .part }}
{{- end -}}

{{- define "pb.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/* The registry readers' servers pull from and builds push to. */}}
{{- define "pb.registryUrl" -}}
{{- if .Values.registry.external.url -}}
{{- .Values.registry.external.url -}}
{{- else -}}
{{- printf "http://%s:5000" (include "pb.name" (dict "root" . "part" "registry")) -}}
{{- end -}}
{{- end -}}

{{- define "pb.hubUrl" -}}
{{- printf "http://%s:8081" (include "pb.name" (dict "root" . "part" "hub")) -}}
{{- end -}}

{{/* The hardened container securityContext used by every non-privileged container. */}}
{{- define "pb.restricted" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Read-only dataset volumes (pod spec part), one per entry of datasets.volumes. */}}
{{- define "pb.datasetVolumes" -}}
{{- range .Values.datasets.volumes }}
- name: {{ printf "data-%s" .name }}
  {{- if .hostPath }}
  hostPath:
    path: {{ .hostPath | quote }}
    type: Directory
  {{- else if .pvc }}
  persistentVolumeClaim:
    claimName: {{ .pvc | quote }}
    readOnly: true
  {{- else if .nfs }}
  nfs:
    server: {{ .nfs.server | quote }}
    path: {{ .nfs.path | quote }}
    readOnly: true
  {{- end }}
{{- end }}
{{- end -}}

{{- define "pb.datasetMounts" -}}
{{- range .Values.datasets.volumes }}
- name: {{ printf "data-%s" .name }}
  mountPath: {{ .mountPath | quote }}
  readOnly: true
  {{- if .subPath }}
  subPath: {{ .subPath | quote }}
  {{- end }}
{{- end }}
{{- end -}}
