{{/* Secrets every panbinder process reads (files/panbinder_config.py maps them to traits). */}}
{{- define "pb.secretEnv" -}}
{{- $secret := include "pb.name" (dict "root" . "part" "secret") -}}
- name: PANBINDER_HUB_TOKEN
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: hub-token}}
- name: PANBINDER_SIGNING_KEY
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: signing-key}}
{{- if .Values.postgresql.existingSecret.name }}
- name: PANBINDER_DB_URL
  valueFrom: {secretKeyRef: {name: {{ .Values.postgresql.existingSecret.name }}, key: {{ .Values.postgresql.existingSecret.key }}}}
{{- else if .Values.postgresql.url }}
- name: PANBINDER_DB_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: db-url}}
{{- end }}
{{- with .Values.registry.external.credentialsSecret }}
- name: PANBINDER_REGISTRY_USERNAME
  valueFrom: {secretKeyRef: {name: {{ . }}, key: username}}
- name: PANBINDER_REGISTRY_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ . }}, key: password}}
{{- end }}
{{- end -}}

{{/* The panbinder container's volumes: config, state, datasets. */}}
{{- define "pb.portalVolumes" -}}
- name: config
  configMap:
    name: {{ include "pb.name" (dict "root" . "part" "config") }}
{{- include "pb.datasetVolumes" . }}
{{- end -}}
