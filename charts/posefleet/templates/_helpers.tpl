{{/* Names and labels. */}}
{{- define "posefleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "posefleet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "posefleet.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* <registry>/<service>:<tag>-<target>, unless image.overrides names the service's image. */}}
{{- define "posefleet.image" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}{{- $target := index . 2 -}}
{{- $override := index (default (dict) $root.Values.image.overrides) $service -}}
{{- if $override -}}
{{- $override -}}
{{- else -}}
{{- printf "%s/%s:%s-%s" $root.Values.image.registry $service (default $root.Chart.AppVersion $root.Values.image.tag) $target -}}
{{- end -}}
{{- end -}}

{{- define "posefleet.redisHost" -}}
{{- printf "%s-redis" (include "posefleet.fullname" .) -}}
{{- end -}}

{{- define "posefleet.redisSecretName" -}}
{{- if .Values.redis.enabled -}}
{{- default (printf "%s-redis" (include "posefleet.fullname" .)) .Values.redis.existingSecret -}}
{{- else -}}
{{- .Values.redis.external.passwordSecret.name -}}
{{- end -}}
{{- end -}}

{{- define "posefleet.redisPasswordKey" -}}
{{- if .Values.redis.enabled -}}{{ .Values.redis.passwordKey }}{{- else -}}{{ .Values.redis.external.passwordSecret.key }}{{- end -}}
{{- end -}}

{{/* A Kubernetes memory quantity ("2Gi", "1536Mi", "2G", "1073741824") in bytes. */}}
{{- define "posefleet.memoryBytes" -}}
{{- $quantity := toString . -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $quantity -}}
{{- $unit := trimPrefix $number $quantity -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "cannot read the memory quantity %q (use e.g. 2Gi or 1536Mi)" $quantity) -}}
{{- end -}}
{{- mulf $number (get $units $unit) | int64 -}}
{{- end -}}

{{/* The in-chart Redis's maxmemory in bytes: redis.maxmemory, or redis.maxmemoryPercent of
the container's memory limit, so the two cannot drift apart. */}}
{{- define "posefleet.redisMaxmemory" -}}
{{- if .Values.redis.maxmemory -}}
{{- include "posefleet.memoryBytes" .Values.redis.maxmemory -}}
{{- else -}}
{{- $limit := (.Values.redis.resources.limits | default dict).memory -}}
{{- if not $limit -}}
{{- fail "set redis.resources.limits.memory (maxmemory is derived from it) or redis.maxmemory: a Redis without maxmemory is OOM-killed when full instead of refusing writes" -}}
{{- end -}}
{{- divf (mulf (include "posefleet.memoryBytes" $limit) .Values.redis.maxmemoryPercent) 100 | int64 -}}
{{- end -}}
{{- end -}}

{{/* host:port of Redis, for KEDA's redis-streams scaler. */}}
{{- define "posefleet.redisAddress" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s.%s.svc:6379" (include "posefleet.redisHost" .) .Release.Namespace -}}
{{- else -}}
{{- $url := urlParse .Values.redis.external.url -}}
{{- $url.host -}}
{{- end -}}
{{- end -}}

{{/* The env every Posefleet process needs to reach Redis; the password never enters a URL in
the manifest: Kubernetes expands $(POSEFLEET_REDIS_PASSWORD) from the Secret at start-up. */}}
{{- define "posefleet.redisEnv" -}}
{{- $secret := include "posefleet.redisSecretName" . -}}
{{- if $secret }}
- name: POSEFLEET_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "posefleet.redisPasswordKey" . }}
{{- end }}
- name: POSEFLEET_REDIS_URL
{{- if .Values.redis.enabled }}
  value: {{ printf "redis://:$(POSEFLEET_REDIS_PASSWORD)@%s:6379/0" (include "posefleet.redisHost" .) | quote }}
{{- else }}
{{- $url := urlParse (required "redis.external.url is required when redis.enabled is false" .Values.redis.external.url) }}
{{- $scheme := ternary "rediss" $url.scheme .Values.redis.external.tls }}
{{- $auth := ternary ":$(POSEFLEET_REDIS_PASSWORD)@" "" (ne $secret "") }}
  value: {{ printf "%s://%s%s%s" $scheme $auth $url.host (default "/0" $url.path) | quote }}
{{- end }}
{{- end -}}

{{- define "posefleet.commonEnv" -}}
{{ include "posefleet.redisEnv" . }}
- name: POSEFLEET_MODEL_ROOT
  value: /models
- name: POSEFLEET_CACHE_DIR
  value: /tmp/posefleet
- name: HOME
  value: /tmp
{{- if .Values.pipelines }}
- name: POSEFLEET_PIPELINES_FILE
  value: /etc/posefleet/pipelines.yaml
{{- end }}
{{- end -}}

{{- /* Webhook settings for the gateway (checks callback URLs) and the control worker
(delivers), included when webhooks are on; without them callback_url is refused. */ -}}
{{- define "posefleet.webhookEnv" -}}
- name: POSEFLEET_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ required "webhooks.existingSecret is required when webhooks are enabled" .Values.webhooks.existingSecret }}
      key: {{ .Values.webhooks.secretKey }}
{{- range $name, $value := .Values.webhooks.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "posefleet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "posefleet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* /tmp is the only writable path (an emptyDir), and the optional pipelines.yaml override. */}}
{{- define "posefleet.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.pipelines }}
- name: pipelines
  mountPath: /etc/posefleet
  readOnly: true
{{- end }}
{{- end -}}

{{- define "posefleet.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.pipelines }}
- name: pipelines
  configMap:
    name: {{ include "posefleet.fullname" . }}-pipelines
{{- end }}
{{- end -}}

{{/* Deployment name of one stage x pool. */}}
{{- define "posefleet.workerName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s-%s" (include "posefleet.fullname" $root) (index . 1) (index . 2) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
