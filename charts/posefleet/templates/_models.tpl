{{/* The workers' model repository from outside their image (values `models`, docs/own-models.md):
a volume on /models and, for the copy sources, the init container that fills it. `image` (the
default) adds nothing: the models baked into the worker image serve. */}}

{{- define "posefleet.modelsCopied" -}}
{{- if or (eq .Values.models.source "s3") (and (eq .Values.models.source "modelcar") (eq .Values.models.modelcar.mode "copy")) }}true{{ end -}}
{{- end -}}

{{/* Init containers of a worker pod; called with (list $ <worker image>). */}}
{{- define "posefleet.modelInitContainers" -}}
{{- $root := index . 0 -}}{{- $image := index . 1 -}}
{{- $models := $root.Values.models -}}
{{- if eq $models.source "s3" }}
# `posefleet models pull` from the worker's own image: boto3 copies the bucket's repository
# into the pod's emptyDir and checks every model's sha256 before a worker starts.
- name: models-pull
  image: {{ $image | quote }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command:
    - python
    - -m
    - services.cli
    - models
    - pull
    - {{ required "models.s3.url is required when models.source is s3" $models.s3.url | quote }}
    - --to
    - /models
    {{- with $models.s3.endpointUrl }}
    - --endpoint-url
    - {{ . | quote }}
    {{- end }}
  env:
    - {name: HOME, value: /tmp}
    {{- with $models.s3.region }}
    - {name: AWS_REGION, value: {{ . | quote }}}
    {{- end }}
    {{- with $models.s3.secret.name }}
    - name: AWS_ACCESS_KEY_ID
      valueFrom:
        secretKeyRef: {name: {{ . }}, key: {{ $models.s3.secret.accessKeyIdKey }}}
    - name: AWS_SECRET_ACCESS_KEY
      valueFrom:
        secretKeyRef: {name: {{ . }}, key: {{ $models.s3.secret.secretAccessKeyKey }}}
    {{- end }}
  resources:
    {{- toYaml $models.initResources | nindent 4 }}
  securityContext:
    {{- include "posefleet.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
    - {name: models, mountPath: /models}
{{- else if include "posefleet.modelsCopied" $root }}
# KServe's "modelcar", copied: the models-only image's repository into the pod's emptyDir.
- name: models-copy
  image: {{ required "models.modelcar.image is required when models.source is modelcar" $models.modelcar.image | quote }}
  imagePullPolicy: {{ $models.modelcar.pullPolicy }}
  command: [sh, -c, 'cp -R "$0"/. /posefleet-models/', {{ $models.modelcar.path | quote }}]
  resources:
    {{- toYaml $models.initResources | nindent 4 }}
  securityContext:
    {{- include "posefleet.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    - {name: models, mountPath: /posefleet-models}
{{- end }}
{{- end -}}

{{- define "posefleet.modelVolumeMount" -}}
{{- $models := .Values.models -}}
{{- if ne $models.source "image" }}
- name: models
  mountPath: /models
  readOnly: true
  {{- if and (eq $models.source "pvc") $models.pvc.subPath }}
  subPath: {{ $models.pvc.subPath | quote }}
  {{- else if and (eq $models.source "modelcar") (eq $models.modelcar.mode "volume") }}
  subPath: {{ trimPrefix "/" $models.modelcar.path | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "posefleet.modelVolume" -}}
{{- $models := .Values.models -}}
{{- if eq $models.source "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ required "models.pvc.claimName is required when models.source is pvc" $models.pvc.claimName }}
    readOnly: true
{{- else if and (eq $models.source "modelcar") (eq $models.modelcar.mode "volume") }}
- name: models
  image:
    reference: {{ required "models.modelcar.image is required when models.source is modelcar" $models.modelcar.image | quote }}
    pullPolicy: {{ $models.modelcar.pullPolicy }}
{{- else if include "posefleet.modelsCopied" . }}
- name: models
  emptyDir:
    sizeLimit: {{ $models.sizeLimit }}
{{- end }}
{{- end -}}
