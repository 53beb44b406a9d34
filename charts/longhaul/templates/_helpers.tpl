{{/*
The chart's name, or nameOverride.
*/}}
{{- define "longhaul.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: fullnameOverride, or the release name with the chart's
name appended unless the release name already contains it. At most 63
characters (a DNS label).
*/}}
{{- define "longhaul.fullname" -}}
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

{{/*
The chart label's value: name-version.
*/}}
{{- define "longhaul.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels every object carries. component is "proxy" unless the caller
passes another (dict "ctx" $ "component" "metrics").
*/}}
{{- define "longhaul.labels" -}}
{{- $ctx := .ctx | default . -}}
helm.sh/chart: {{ include "longhaul.chart" $ctx }}
{{ include "longhaul.selectorLabels" $ctx }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component | default "proxy" }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- end }}

{{/*
The labels that select the pods: stable across upgrades (a Deployment's
selector cannot change).
*/}}
{{- define "longhaul.selectorLabels" -}}
app.kubernetes.io/name: {{ include "longhaul.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount's name.
*/}}
{{- define "longhaul.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "longhaul.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository:tag, or repository@digest.
*/}}
{{- define "longhaul.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/*
The longhaul configuration as rendered into the ConfigMap: .Values.config
with every endpoints.kubernetes (of a listener or of a backend) that names
no namespace given the release's, and, in gateway mode, gateway.class set
to gateway.className. Returned as YAML; fromYaml it for the objects.
*/}}
{{- define "longhaul.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- range $l := ($cfg.listeners | default list) }}
{{- $sets := list $l }}
{{- range $b := ($l.backends | default list) }}
{{- $sets = append $sets $b }}
{{- end }}
{{- range $s := $sets }}
{{- if and $s.endpoints $s.endpoints.kubernetes }}
{{- if not $s.endpoints.kubernetes.namespace }}
{{- $_ := set $s.endpoints.kubernetes "namespace" $.Release.Namespace }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.gateway.enabled }}
{{- $gw := $cfg.gateway | default dict }}
{{- $_ := set $gw "class" .Values.gateway.className }}
{{- $_ := set $cfg "gateway" $gw }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The port of a host:port address (the text after its last colon), checked to
be a number from 1 to 65535. Pass (list "what" "address").
*/}}
{{- define "longhaul.port" -}}
{{- $what := index . 0 }}{{ $addr := index . 1 | toString }}
{{- if not (regexMatch "^.*:[0-9]{1,5}$" $addr) }}
{{- fail (printf "%s: address %q has no port (want host:port)" $what $addr) }}
{{- end }}
{{- $port := regexFind "[0-9]+$" $addr | atoi }}
{{- if or (lt $port 1) (gt $port 65535) }}
{{- fail (printf "%s: port %d of %q is out of range" $what $port $addr) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
The proxy's ports, as YAML: a list of {name, port}, one per listener of the
config (named after it) and per gateway.ports entry. Port names are
IANA service names: at most 15 characters, lower-case letters, digits and
dashes, a letter among them.
*/}}
{{- define "longhaul.proxyPorts" -}}
{{- $cfg := include "longhaul.config" . | fromYaml }}
{{- $ports := list }}
{{- range $i, $l := ($cfg.listeners | default list) }}
{{- $what := printf "config.listeners[%d]" $i }}
{{- $ports = append $ports (dict "name" (required (printf "%s.name is required" $what) $l.name) "port" (include "longhaul.port" (list $what (required (printf "%s.address is required" $what) $l.address)) | atoi)) }}
{{- end }}
{{- if .Values.gateway.enabled }}
{{- range $i, $p := .Values.gateway.ports }}
{{- $ports = append $ports (dict "name" $p.name "port" (int $p.port)) }}
{{- end }}
{{- end }}
{{- $seen := dict }}
{{- range $ports }}
{{- if or (gt (len .name) 15) (not (regexMatch "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$" .name)) (not (regexMatch "[a-z]" .name)) }}
{{- fail (printf "port name %q (a listener's or gateway.ports'): a port name has at most 15 characters, lower-case letters, digits and inner dashes, a letter among them" .name) }}
{{- end }}
{{- if or (hasKey $seen .name) (hasKey $seen (toString .port)) }}
{{- fail (printf "port %s (%d) is named or numbered twice among the listeners and gateway.ports" .name .port) }}
{{- end }}
{{- $_ := set $seen .name true }}{{ $_ := set $seen (toString .port) true }}
{{- end }}
{{- if not $ports }}
{{- fail "config.listeners is empty: longhaul needs a listener, or gateway.enabled with gateway.ports" }}
{{- end }}
{{- toYaml (dict "ports" $ports) }}
{{- end }}

{{/*
The admin port (probes and /metrics), from config.admin.address, which must
not be a loopback address: the kubelet probes it from the node.
*/}}
{{- define "longhaul.adminPort" -}}
{{- $cfg := include "longhaul.config" . | fromYaml }}
{{- $addr := (($cfg.admin | default dict).address | default "127.0.0.1:9901") | toString }}
{{- if or (hasPrefix "127." $addr) (hasPrefix "localhost:" $addr) (hasPrefix "[::1]:" $addr) }}
{{- fail (printf "config.admin.address %q is a loopback address: the kubelet's probes and Prometheus cannot reach it (use 0.0.0.0:PORT)" $addr) }}
{{- end }}
{{- include "longhaul.port" (list "config.admin.address" $addr) }}
{{- end }}

{{/*
The namespaces whose EndpointSlices the config reads (its
endpoints.kubernetes, defaulted to the release's), sorted, as YAML
{namespaces: [...]}; the release's namespace is always among them.
*/}}
{{- define "longhaul.endpointNamespaces" -}}
{{- $cfg := include "longhaul.config" . | fromYaml }}
{{- $ns := list .Release.Namespace }}
{{- range $l := ($cfg.listeners | default list) }}
{{- $sets := list $l }}
{{- range $b := ($l.backends | default list) }}
{{- $sets = append $sets $b }}
{{- end }}
{{- range $s := $sets }}
{{- if and $s.endpoints $s.endpoints.kubernetes }}
{{- $ns = append $ns $s.endpoints.kubernetes.namespace }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (dict "namespaces" ($ns | uniq | sortAlpha)) }}
{{- end }}

{{/*
A Go duration ("25s", "1m30s", "500ms", "1h") in milliseconds, rounded up.
Pass (list "what" value). Empty or 0 is 0.
*/}}
{{- define "longhaul.durationMillis" -}}
{{- $what := index . 0 }}{{ $d := index . 1 | toString }}
{{- if or (eq $d "") (eq $d "0") }}0
{{- else }}
{{- $unit := `([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)` }}
{{- if not (regexMatch (printf "^(%s)+$" $unit) $d) }}
{{- fail (printf "%s: %q is not a Go duration (such as 25s, 1m30s, 500ms)" $what $d) }}
{{- end }}
{{- $ms := 0.0 }}
{{- range regexFindAll $unit $d -1 }}
{{- $n := regexFind `^([0-9]+(\.[0-9]*)?|\.[0-9]+)` . }}
{{- $u := trimPrefix $n . }}
{{- $scale := get (dict "ns" 0.000001 "us" 0.001 "µs" 0.001 "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0) $u }}
{{- $ms = addf $ms (mulf (float64 $n) $scale) }}
{{- end }}
{{- ceil $ms | int64 }}
{{- end }}
{{- end }}

{{/*
The longest drain timeout, in milliseconds, of the config's listeners and
backends (a listener without drain.timeout has longhaul's default, 25s; so
do the Gateway listeners in gateway mode).
*/}}
{{- define "longhaul.maxDrainMillis" -}}
{{- $cfg := include "longhaul.config" . | fromYaml }}
{{- $default := 25000 }}
{{- $max := 0 }}
{{- if .Values.gateway.enabled }}{{ $max = $default }}{{ end }}
{{- range $i, $l := ($cfg.listeners | default list) }}
{{- $t := $default }}
{{- if and $l.drain (hasKey $l.drain "timeout") }}
{{- $t = include "longhaul.durationMillis" (list (printf "config.listeners[%d].drain.timeout" $i) $l.drain.timeout) | atoi }}
{{- end }}
{{- $max = max $max $t }}
{{- range $j, $b := ($l.backends | default list) }}
{{- if and $b.drain (hasKey $b.drain "timeout") }}
{{- $max = max $max (include "longhaul.durationMillis" (list (printf "config.listeners[%d].backends[%d].drain.timeout" $i $j) $b.drain.timeout) | atoi) }}
{{- end }}
{{- end }}
{{- end }}
{{- $max }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the shutdown delay, then the longest drain
timeout, then shutdown.marginSeconds, rounded up to a second.
*/}}
{{- define "longhaul.terminationGracePeriodSeconds" -}}
{{- $delay := include "longhaul.durationMillis" (list "shutdown.delay" .Values.shutdown.delay) | atoi }}
{{- $drain := include "longhaul.maxDrainMillis" . | atoi }}
{{- $ms := add $delay $drain (mul (int .Values.shutdown.marginSeconds) 1000) }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/*
GOMEMLIMIT: goMemLimit.value, or goMemLimit.percent of
resources.limits.memory in MiB, rounded down; empty without a memory limit
or with percent 0. Quantities: a number of bytes, or one with a suffix Ki,
Mi, Gi, Ti, k, M, G or T.
*/}}
{{- define "longhaul.goMemLimit" -}}
{{- if .Values.goMemLimit.value }}
{{- .Values.goMemLimit.value }}
{{- else }}
{{- $limit := "" }}
{{- if and .Values.resources .Values.resources.limits .Values.resources.limits.memory }}
{{- $limit = .Values.resources.limits.memory }}
{{- if or (kindIs "float64" $limit) (kindIs "int" $limit) (kindIs "int64" $limit) }}
{{- /* a number of bytes: YAML makes it a number, not a string */}}
{{- $limit = printf "%d" (int64 $limit) }}
{{- end }}
{{- $limit = toString $limit }}
{{- end }}
{{- $pct := int .Values.goMemLimit.percent }}
{{- if and $limit (gt $pct 0) }}
{{- if gt $pct 100 }}
{{- fail (printf "goMemLimit.percent %d is above 100" $pct) }}
{{- end }}
{{- if not (regexMatch `^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$` $limit) }}
{{- fail (printf "resources.limits.memory %q: the chart derives GOMEMLIMIT from a whole number with a suffix Ki, Mi, Gi, Ti, k, M, G or T (or none: bytes); set goMemLimit.value instead" $limit) }}
{{- end }}
{{- $n := regexFind `^[0-9]+` $limit | int64 }}
{{- $suffix := regexFind `[A-Za-z]*$` $limit }}
{{- $scale := get (dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000) $suffix | int64 }}
{{- $mib := div (div (mul $n $scale $pct) 100) 1048576 }}
{{- if lt $mib 1 }}
{{- fail (printf "resources.limits.memory %q is too small for a GOMEMLIMIT in MiB" $limit) }}
{{- end }}
{{- printf "%dMiB" $mib }}
{{- end }}
{{- end }}
{{- end }}
