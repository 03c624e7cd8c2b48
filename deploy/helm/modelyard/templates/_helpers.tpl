{{/* Names: <release>-modelyard unless the release name already holds the chart name. */}}
{{- define "modelyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The backends in a fixed order (the gateway's), and the enabled ones. */}}
{{- define "modelyard.backendNames" -}}vllm nim openai azure openrouter{{- end -}}

{{/* Adapter Services are <adapterPrefix><backend>; the gateway's GATEWAY_ADAPTER_PREFIX. */}}
{{- define "modelyard.adapterPrefix" -}}{{ include "modelyard.fullname" . }}-adapter-{{- end -}}

{{- define "modelyard.engineName" -}}{{ include "modelyard.fullname" . }}-vllm-engine{{- end -}}

{{- define "modelyard.postgresName" -}}{{ include "modelyard.fullname" . }}-postgresql{{- end -}}

{{- define "modelyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "modelyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "gateway"). */}}
{{- define "modelyard.selector" -}}
app.kubernetes.io/name: {{ include "modelyard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "modelyard.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{- define "modelyard.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The vLLM engines' base URL(s) for the vllm adapter: one env var, by the discovery mode. */}}
{{- define "modelyard.vllmUpstreamEnv" -}}
{{- $b := .Values.backends.vllm -}}
{{- $e := .Values.engines.vllm -}}
{{- $svc := printf "%s.%s.svc.%s" (include "modelyard.engineName" .) .Release.Namespace .Values.clusterDomain -}}
{{- if $b.upstreamUrl }}
- name: MODELYARD_UPSTREAM_URL
  value: {{ $b.upstreamUrl | quote }}
{{- else if $b.upstreamDns }}
- name: MODELYARD_UPSTREAM_DNS
  value: {{ $b.upstreamDns | quote }}
{{- else if eq $e.discovery "pods" }}
{{- $urls := list -}}
{{- range $i := until (int $e.replicas) }}
{{- $urls = append $urls (printf "http://%s-%d.%s:%d/v1" (include "modelyard.engineName" $) $i $svc (int $e.port)) -}}
{{- end }}
- name: MODELYARD_UPSTREAM_URL
  value: {{ join "," $urls | quote }}
{{- else }}
- name: MODELYARD_UPSTREAM_DNS
  value: {{ printf "http://%s:%d/v1" $svc (int $e.port) | quote }}
{{- end }}
{{- end -}}

{{/* Checks that stop a render with a message naming the value to fix. */}}
{{- define "modelyard.validate" -}}
{{- $v := .Values -}}
{{- $names := splitList " " (include "modelyard.backendNames" .) -}}
{{- if not (has $v.policyBackend $names) -}}
{{- fail (printf "policyBackend must be one of %s (got %q)" (join ", " $names) $v.policyBackend) -}}
{{- end -}}
{{- if not (index $v.backends $v.policyBackend).enabled -}}
{{- fail (printf "policyBackend is %s but backends.%s.enabled is false" $v.policyBackend $v.policyBackend) -}}
{{- end -}}
{{- $b := $v.backends.vllm -}}
{{- if and $b.enabled (not $v.engines.vllm.enabled) (not $b.upstreamUrl) (not $b.upstreamDns) -}}
{{- fail "backends.vllm needs engines: set engines.vllm.enabled, backends.vllm.upstreamUrl or backends.vllm.upstreamDns" -}}
{{- end -}}
{{- if not (has $v.engines.vllm.discovery (list "dns" "pods")) -}}
{{- fail (printf "engines.vllm.discovery must be dns or pods (got %q)" $v.engines.vllm.discovery) -}}
{{- end -}}
{{- if not (has $v.engines.vllm.modelCache.type (list "pvc" "existingClaim" "emptyDir")) -}}
{{- fail (printf "engines.vllm.modelCache.type must be pvc, existingClaim or emptyDir (got %q)" $v.engines.vllm.modelCache.type) -}}
{{- end -}}
{{- if and (eq $v.engines.vllm.modelCache.type "existingClaim") (not $v.engines.vllm.modelCache.existingClaim) -}}
{{- fail "engines.vllm.modelCache.type is existingClaim: set engines.vllm.modelCache.existingClaim" -}}
{{- end -}}
{{- range $name := list "nim" "openai" "azure" "openrouter" -}}
{{- $h := index $v.backends $name -}}
{{- if and $h.enabled (not $h.upstreamUrl) (not $h.upstreamDns) -}}
{{- fail (printf "backends.%s.enabled: set backends.%s.upstreamUrl" $name $name) -}}
{{- end -}}
{{- if and $h.enabled (ne $name "nim") (not $h.apiKeySecret.name) -}}
{{- fail (printf "backends.%s.enabled: set backends.%s.apiKeySecret.name (a Secret holding the provider key)" $name $name) -}}
{{- end -}}
{{- end -}}
{{- if and $v.postgresql.enabled $v.externalDatabase.existingSecret -}}
{{- fail "postgresql.enabled and externalDatabase.existingSecret: choose one database" -}}
{{- end -}}
{{- if and $v.postgresql.enabled (not $v.postgresql.auth.existingSecret) -}}
{{- fail "postgresql.enabled: set postgresql.auth.existingSecret (a Secret holding the password)" -}}
{{- end -}}
{{- if and $v.ingress.enabled (not $v.ingress.host) -}}
{{- fail "ingress.enabled: set ingress.host" -}}
{{- end -}}
{{- end -}}

{{/* The store's URL for the adapters: from the external database's Secret, or the in-chart server's
     address with the password from its Secret as PGPASSWORD (libpq and its drivers read it). */}}
{{- define "modelyard.storeEnv" -}}
{{- $v := .Values -}}
{{- if $v.externalDatabase.existingSecret }}
- name: {{ $v.store.urlEnv }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalDatabase.existingSecret }}
      key: {{ $v.externalDatabase.existingSecretKey }}
{{- else if $v.postgresql.enabled }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.postgresql.auth.existingSecret }}
      key: {{ $v.postgresql.auth.passwordKey }}
- name: {{ $v.store.urlEnv }}
  value: {{ printf "postgresql://%s@%s:5432/%s" $v.postgresql.auth.username (include "modelyard.postgresName" .) $v.postgresql.auth.database | quote }}
{{- end }}
{{- end -}}
