{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "authpilot.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; the release name alone when it already contains the chart's. */}}
{{- define "authpilot.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "authpilot.labels" -}}
{{ include "authpilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: authpilot
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "authpilot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authpilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "authpilot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "authpilot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "authpilot.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Paths inside the container; the image (helm/docker/Dockerfile) uses the same ones. */}}
{{- define "authpilot.dataDir" -}}/var/lib/authpilot{{- end -}}
{{- define "authpilot.modelDir" -}}/compiled_models{{- end -}}
{{- define "authpilot.kafkaTlsDir" -}}/etc/authpilot/kafka-tls{{- end -}}
{{- define "authpilot.modelCacheDir" -}}/var/cache/authpilot/models{{- end -}}

{{/* Credentials from existing Secrets, for every pod that talks to Kafka or the registry. */}}
{{- define "authpilot.secretEnv" -}}
{{- if .Values.kafka.sasl.existingSecret }}
- name: AUTHPILOT_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: AUTHPILOT_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.schemaRegistry.existingSecret }}
- name: AUTHPILOT_SCHEMA_REGISTRY_USER_INFO
  valueFrom:
    secretKeyRef:
      name: {{ .Values.schemaRegistry.existingSecret }}
      key: {{ .Values.schemaRegistry.userInfoKey }}
{{- end }}
{{- end -}}

{{- define "authpilot.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "authpilot.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "authpilot.kafkaTlsMount" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "authpilot.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "authpilot.kafkaTlsVolume" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    items:
      - key: {{ .Values.kafka.tls.caKey }}
        path: {{ .Values.kafka.tls.caKey }}
{{- end }}
{{- end -}}

{{/* Settings the chart derives from its own values; config.* may not repeat them. */}}
{{- define "authpilot.managedConfig" -}}
AUTHPILOT_WEB_PORT: {{ .Values.webPort | quote }}
{{- /* the worker binds 127.0.0.1 by default; in the pod the kubelet probes and Prometheus reach it on the pod address, and the NetworkPolicy says who else may */}}
AUTHPILOT_WEB_HOST: "0.0.0.0"
AUTHPILOT_DATA_DIR: {{ include "authpilot.dataDir" . | quote }}
AUTHPILOT_MODEL_DIR: {{ include "authpilot.modelDir" . | quote }}
AUTHPILOT_MODEL_CACHE_DIR: {{ include "authpilot.modelCacheDir" . | quote }}
{{- with .Values.mlflow.trackingUri }}
AUTHPILOT_MLFLOW_TRACKING_URI: {{ . | quote }}
{{- end }}
AUTHPILOT_TABLE_STANDBY_REPLICAS: {{ .Values.standbyReplicas | quote }}
AUTHPILOT_CONSUMER_SESSION_TIMEOUT_MS: {{ .Values.consumer.sessionTimeoutMs | quote }}
AUTHPILOT_CONSUMER_HEARTBEAT_MS: {{ .Values.consumer.heartbeatMs | quote }}
AUTHPILOT_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- with .Values.kafka.sasl.mechanism }}
AUTHPILOT_KAFKA_SASL_MECHANISM: {{ . | quote }}
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
AUTHPILOT_KAFKA_SSL_CAFILE: {{ printf "%s/%s" (include "authpilot.kafkaTlsDir" .) .Values.kafka.tls.caKey | quote }}
{{- end }}
{{- with .Values.schemaRegistry.url }}
AUTHPILOT_SCHEMA_REGISTRY_URL: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Fail the render on combinations the schema cannot express. */}}
{{- define "authpilot.validate" -}}
{{- $sasl := hasPrefix "SASL_" .Values.kafka.securityProtocol -}}
{{- if and $sasl (not .Values.kafka.sasl.mechanism) -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.mechanism" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and $sasl (not .Values.kafka.sasl.existingSecret) -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.existingSecret (a Secret with the SASL user and password)" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (not $sasl) .Values.kafka.sasl.existingSecret -}}
{{- fail "kafka.sasl.existingSecret is set but kafka.securityProtocol is not SASL_PLAINTEXT or SASL_SSL" -}}
{{- end -}}
{{- if and .Values.kafka.tls.existingSecret (not (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL"))) -}}
{{- fail "kafka.tls.existingSecret is set but kafka.securityProtocol is not SSL or SASL_SSL" -}}
{{- end -}}
{{- if and .Values.retrain.enabled (not .Values.mlflow.trackingUri) -}}
{{- fail "retrain.enabled needs mlflow.trackingUri: the pipeline registers models and workers fetch them from the MLflow server" -}}
{{- end -}}
{{- if and (gt (int .Values.standbyReplicas) 0) (le (int .Values.replicaCount) (int .Values.standbyReplicas)) -}}
{{- fail (printf "standbyReplicas=%d needs replicaCount > %d: a standby lives on another worker" (int .Values.standbyReplicas) (int .Values.standbyReplicas)) -}}
{{- end -}}
{{- end -}}
