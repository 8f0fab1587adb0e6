{{/* Chart name, overridable. */}}
{{- define "storefold.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name, at most 63 characters (DNS label). */}}
{{- define "storefold.fullname" -}}
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

{{/* Name of one role's objects: <fullname>-<component>, kept within 63 characters. */}}
{{- define "storefold.componentName" -}}
{{- $full := include "storefold.fullname" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $full .component }}
{{- end }}

{{- define "storefold.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "ingest"). */}}
{{- define "storefold.selectorLabels" -}}
app.kubernetes.io/name: {{ include "storefold.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component. */}}
{{- define "storefold.labels" -}}
helm.sh/chart: {{ include "storefold.chart" .ctx }}
{{ include "storefold.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: storefold
{{- end }}

{{- define "storefold.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "storefold.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "storefold.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding storefold.toml. */}}
{{- define "storefold.configSecretName" -}}
{{- default (include "storefold.componentName" (dict "ctx" . "component" "config")) .Values.config.existingSecret }}
{{- end }}

{{/* Pod annotation that rolls the pods when the chart's configuration changes. */}}
{{- define "storefold.configChecksum" -}}
checksum/config: {{ printf "%s/%s" .Values.config.existingSecret .Values.config.toml | sha256sum }}
{{- end }}

{{/* Environment shared by every storefold container. */}}
{{- define "storefold.env" -}}
- name: STOREFOLD_CONFIG
  value: /etc/storefold/storefold.toml
- name: STOREFOLD_LOG_FORMAT
  value: json
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volume mounts shared by every storefold container. */}}
{{- define "storefold.volumeMounts" -}}
- name: config
  mountPath: /etc/storefold
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Volumes shared by every storefold pod. */}}
{{- define "storefold.volumes" -}}
- name: config
  secret:
    secretName: {{ include "storefold.configSecretName" . }}
    items:
      - key: {{ .Values.config.secretKey }}
        path: storefold.toml
- name: tmp
  emptyDir: {}
{{- end }}

{{/* Pod-level settings shared by every storefold pod (indent under spec:). */}}
{{- define "storefold.podCommon" -}}
serviceAccountName: {{ include "storefold.serviceAccountName" . }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.topics.waitForTopics }}
initContainers:
  - name: wait-for-topics
    image: {{ include "storefold.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command:
      - sh
      - -c
      - until storefold topics check --timeout 10; do echo "waiting for storefold's topics"; sleep 5; done
    env:
      {{- include "storefold.env" . | nindent 6 }}
    {{- with .Values.envFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    resources:
      {{- toYaml .Values.topics.resources | nindent 6 }}
    volumeMounts:
      {{- include "storefold.volumeMounts" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* HTTP probes on a role's port: liveness /healthz, readiness /readyz. */}}
{{- define "storefold.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}
