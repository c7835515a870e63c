package validate

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// collectorImage is the OpenTelemetry Collector deploy/ runs, and collectorComponents what its
// distribution (the core one, otelcol) holds at that version, as the distribution's manifest
// lists them. A new image version needs the list checked again.
const collectorImage = "otel/opentelemetry-collector:0.159.0"

var collectorComponents = map[string][]string{
	"receivers":  {"nop", "otlp", "hostmetrics", "jaeger", "kafka", "prometheus", "zipkin"},
	"processors": {"batch", "memory_limiter", "attributes", "resource", "span", "probabilistic_sampler", "filter"},
	"exporters":  {"debug", "nop", "otlp", "otlphttp", "file", "kafka", "prometheus", "prometheusremotewrite", "zipkin"},
	"extensions": {"zpages", "health_check", "pprof"},
	"connectors": {"forward"},
}

// collectorConfig is a collector's configuration file: its components by section, each
// component's own settings left to the collector, and the pipelines that join them.
type collectorConfig struct {
	Extensions map[string]json.RawMessage `json:"extensions"`
	Receivers  map[string]json.RawMessage `json:"receivers"`
	Processors map[string]json.RawMessage `json:"processors"`
	Exporters  map[string]json.RawMessage `json:"exporters"`
	Connectors map[string]json.RawMessage `json:"connectors"`
	Service    struct {
		Extensions []string            `json:"extensions"`
		Pipelines  map[string]pipeline `json:"pipelines"`
		Telemetry  json.RawMessage     `json:"telemetry"`
	} `json:"service"`
}

// pipeline is one of a collector's pipelines: the components it joins, by id.
type pipeline struct {
	Receivers  []string `json:"receivers"`
	Processors []string `json:"processors"`
	Exporters  []string `json:"exporters"`
}

// endpoint is the setting of a component that listens.
type endpoint struct {
	Endpoint string `json:"endpoint"`
}

// decodeCollector decodes a collector's configuration strictly: an unknown section or a
// duplicate key is an error.
func decodeCollector(b []byte) (collectorConfig, error) {
	var c collectorConfig
	err := yaml.UnmarshalStrict(b, &c)
	return c, err
}

// otlpHTTPPort is the port the collector's OTLP receiver takes OTLP/HTTP on.
func (c collectorConfig) otlpHTTPPort() (string, error) {
	var otlp struct {
		Protocols struct {
			GRPC *endpoint `json:"grpc"`
			HTTP *endpoint `json:"http"`
		} `json:"protocols"`
	}
	raw, ok := c.Receivers["otlp"]
	if !ok {
		return "", fmt.Errorf("no otlp receiver")
	}
	if err := json.Unmarshal(raw, &otlp); err != nil {
		return "", fmt.Errorf("the otlp receiver: %w", err)
	}
	if otlp.Protocols.HTTP == nil {
		return "", fmt.Errorf("the otlp receiver takes no OTLP/HTTP, which the platform sends")
	}
	return portOf(otlp.Protocols.HTTP.Endpoint)
}

// healthPort is the port of the collector's health_check extension.
func (c collectorConfig) healthPort() (string, error) {
	var hc endpoint
	raw, ok := c.Extensions["health_check"]
	if !ok {
		return "", fmt.Errorf("no health_check extension")
	}
	if err := json.Unmarshal(raw, &hc); err != nil {
		return "", fmt.Errorf("the health_check extension: %w", err)
	}
	return portOf(hc.Endpoint)
}

func portOf(hostPort string) (string, error) {
	_, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", hostPort)
	}
	return port, nil
}

// collectorProblems checks that every component is one the distribution has, the pipelines
// name only defined components, and the platform's traces and metrics have a pipeline each
// from the OTLP receiver.
func collectorProblems(c collectorConfig) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	sections := map[string]map[string]json.RawMessage{
		"receivers": c.Receivers, "processors": c.Processors, "exporters": c.Exporters,
		"extensions": c.Extensions, "connectors": c.Connectors,
	}
	for section, components := range sections {
		for id := range components {
			kind, _, _ := strings.Cut(id, "/")
			if !slices.Contains(collectorComponents[section], kind) {
				add("%s %s: %s has no such component (it has %v)", section, id, collectorImage, collectorComponents[section])
			}
		}
	}
	for _, id := range c.Service.Extensions {
		if _, ok := c.Extensions[id]; !ok {
			add("service.extensions names %s, which extensions does not define", id)
		}
	}
	defined := func(ids []string, in ...map[string]json.RawMessage) []string {
		var missing []string
		for _, id := range ids {
			if !slices.ContainsFunc(in, func(m map[string]json.RawMessage) bool { _, ok := m[id]; return ok }) {
				missing = append(missing, id)
			}
		}
		return missing
	}
	for name, p := range c.Service.Pipelines {
		signal, _, _ := strings.Cut(name, "/")
		if signal != "traces" && signal != "metrics" && signal != "logs" {
			add("pipeline %s: not a traces, metrics or logs pipeline", name)
		}
		if len(p.Receivers) == 0 || len(p.Exporters) == 0 {
			add("pipeline %s needs a receiver and an exporter", name)
		}
		if missing := defined(p.Receivers, c.Receivers, c.Connectors); len(missing) > 0 {
			add("pipeline %s receives from %v, which are not defined", name, missing)
		}
		if missing := defined(p.Processors, c.Processors); len(missing) > 0 {
			add("pipeline %s processes with %v, which are not defined", name, missing)
		}
		if missing := defined(p.Exporters, c.Exporters, c.Connectors); len(missing) > 0 {
			add("pipeline %s exports to %v, which are not defined", name, missing)
		}
	}
	for _, signal := range []string{"traces", "metrics"} {
		if !slices.Contains(c.Service.Pipelines[signal].Receivers, "otlp") {
			add("no %s pipeline receives from otlp: the platform's %s would be dropped", signal, signal)
		}
	}
	if _, err := c.otlpHTTPPort(); err != nil {
		add("%v", err)
	}
	return problems
}

// promConfig is a Prometheus configuration file, as far as deploy/ uses it: scrape jobs by
// static targets or by Kubernetes pods, and relabelling.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `json:"scrape_interval,omitempty"`
		ScrapeTimeout      string `json:"scrape_timeout,omitempty"`
		EvaluationInterval string `json:"evaluation_interval,omitempty"`
	} `json:"global"`
	ScrapeConfigs []scrapeConfig `json:"scrape_configs"`
}

type scrapeConfig struct {
	JobName        string `json:"job_name"`
	ScrapeInterval string `json:"scrape_interval,omitempty"`
	ScrapeTimeout  string `json:"scrape_timeout,omitempty"`
	MetricsPath    string `json:"metrics_path,omitempty"`
	StaticConfigs  []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels,omitempty"`
	} `json:"static_configs,omitempty"`
	KubernetesSDConfigs []kubernetesSD  `json:"kubernetes_sd_configs,omitempty"`
	RelabelConfigs      []relabelConfig `json:"relabel_configs,omitempty"`
}

type kubernetesSD struct {
	Role       string `json:"role"`
	Namespaces struct {
		Names []string `json:"names"`
	} `json:"namespaces"`
}

type relabelConfig struct {
	SourceLabels []string `json:"source_labels,omitempty"`
	Separator    *string  `json:"separator,omitempty"`
	Regex        *string  `json:"regex,omitempty"`
	TargetLabel  string   `json:"target_label,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

func decodeProm(b []byte) (promConfig, error) {
	var c promConfig
	err := yaml.UnmarshalStrict(b, &c)
	return c, err
}

// promProblems checks what Prometheus would refuse in c: missing or repeated job names, bad
// durations, a timeout longer than the interval, relabelling it would not compile. Only the
// relabel actions relabel below knows are allowed, so that the checks built on it hold.
func promProblems(c promConfig) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	duration := func(what, s string, def time.Duration) time.Duration {
		if s == "" {
			return def
		}
		d, err := model.ParseDuration(s)
		if err != nil {
			add("%s: %v", what, err)
		}
		return time.Duration(d)
	}
	interval := duration("global.scrape_interval", c.Global.ScrapeInterval, time.Minute)
	timeout := duration("global.scrape_timeout", c.Global.ScrapeTimeout, 10*time.Second)
	duration("global.evaluation_interval", c.Global.EvaluationInterval, time.Minute)
	jobs := map[string]bool{}
	for i, sc := range c.ScrapeConfigs {
		if sc.JobName == "" || jobs[sc.JobName] {
			add("scrape_configs[%d]: job_name %q is empty or repeated", i, sc.JobName)
		}
		jobs[sc.JobName] = true
		if i, t := duration(sc.JobName+": scrape_interval", sc.ScrapeInterval, interval), duration(sc.JobName+": scrape_timeout", sc.ScrapeTimeout, timeout); t > i {
			add("%s: scrape_timeout %v is longer than scrape_interval %v", sc.JobName, t, i)
		}
		if sc.MetricsPath != "" && !strings.HasPrefix(sc.MetricsPath, "/") {
			add("%s: metrics_path %q must start with /", sc.JobName, sc.MetricsPath)
		}
		for _, sd := range sc.KubernetesSDConfigs {
			if sd.Role != "pod" {
				add("%s: kubernetes_sd_configs role %q; the checks here know pods only", sc.JobName, sd.Role)
			}
		}
		for _, rc := range sc.RelabelConfigs {
			if !slices.Contains([]string{"", "replace", "keep", "drop"}, rc.Action) {
				add("%s: relabel action %q; the checks here know replace, keep and drop", sc.JobName, rc.Action)
			}
			if rc.Regex != nil {
				if _, err := regexp.Compile(*rc.Regex); err != nil {
					add("%s: relabel regex %q: %v", sc.JobName, *rc.Regex, err)
				}
			}
			if (rc.Action == "" || rc.Action == "replace") && rc.TargetLabel == "" {
				add("%s: a replace needs a target_label", sc.JobName)
			}
		}
	}
	return problems
}

// relabel applies relabelling to a target's labels as Prometheus does (replace, keep, drop),
// and reports whether the target is kept.
func relabel(labels map[string]string, rcs []relabelConfig) (map[string]string, bool) {
	out := maps.Clone(labels)
	for _, rc := range rcs {
		sep, expr, replacement := ";", "(.*)", "$1"
		if rc.Separator != nil {
			sep = *rc.Separator
		}
		if rc.Regex != nil {
			expr = *rc.Regex
		}
		if rc.Replacement != nil {
			replacement = *rc.Replacement
		}
		re, err := regexp.Compile("^(?s:" + expr + ")$")
		if err != nil {
			return nil, false
		}
		values := make([]string, len(rc.SourceLabels))
		for i, l := range rc.SourceLabels {
			values[i] = out[l]
		}
		value := strings.Join(values, sep)
		switch rc.Action {
		case "keep":
			if !re.MatchString(value) {
				return nil, false
			}
		case "drop":
			if re.MatchString(value) {
				return nil, false
			}
		default:
			match := re.FindStringSubmatchIndex(value)
			if match == nil {
				continue
			}
			target := string(re.ExpandString(nil, rc.TargetLabel, value, match))
			if res := string(re.ExpandString(nil, replacement, value, match)); res != "" {
				out[target] = res
			} else {
				delete(out, target)
			}
		}
	}
	return out, true
}

// promLabelName is how Kubernetes discovery names a label or annotation key in a meta label.
var promLabelName = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// podTargets returns the targets Prometheus's pod discovery finds in a pod at ip: one per
// declared container port, with the pod's meta labels.
func podTargets(pod corev1.PodTemplateSpec, namespace, ip string) []map[string]string {
	meta := map[string]string{
		"__meta_kubernetes_namespace": namespace,
		"__meta_kubernetes_pod_name":  "pod-0",
		"__meta_kubernetes_pod_ip":    ip,
	}
	for k, v := range pod.Annotations {
		meta["__meta_kubernetes_pod_annotation_"+promLabelName.ReplaceAllString(k, "_")] = v
	}
	for k, v := range pod.Labels {
		meta["__meta_kubernetes_pod_label_"+promLabelName.ReplaceAllString(k, "_")] = v
	}
	var out []map[string]string
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			t := maps.Clone(meta)
			t["__address__"] = net.JoinHostPort(ip, strconv.Itoa(int(p.ContainerPort)))
			t["__metrics_path__"] = "/metrics"
			out = append(out, t)
		}
	}
	return out
}

// adminListen is the address the platform process name's admin listener takes with env; the
// gateway's may come from its configuration file instead (gatewayFile, "" for none).
func adminListen(name string, env map[string]string, gatewayFile string) string {
	if name != "gateway" {
		return env["BASALT_ADMIN_LISTEN"]
	}
	if v := env["BASALT_GATEWAY_ADMIN_LISTEN"]; v != "" {
		return v
	}
	var file struct {
		AdminListen string `json:"admin_listen"`
	}
	_ = yaml.Unmarshal([]byte(gatewayFile), &file)
	return file.AdminListen
}

// adminPort returns the port of an admin listener that others can reach, or a problem.
func adminPort(name, listen string) (string, string) {
	host, port, err := net.SplitHostPort(listen)
	switch {
	case err != nil:
		return "", fmt.Sprintf("%s has no admin listener (%q), so nothing can scrape its metrics", name, listen)
	case host != "" && host != "0.0.0.0" && host != "::":
		return "", fmt.Sprintf("%s's admin listener %s is not reachable from outside its container", name, listen)
	}
	return port, ""
}

// otlpProblems checks that a process sends OTLP to the collector's host and OTLP/HTTP port.
func otlpProblems(name string, env map[string]string, host, port string) []string {
	want := "http://" + net.JoinHostPort(host, port)
	u, err := url.Parse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
	if err != nil || u.Scheme+"://"+u.Host != want {
		return []string{fmt.Sprintf("%s sends OTLP to %q, want the collector at %s", name, env["OTEL_EXPORTER_OTLP_ENDPOINT"], want)}
	}
	return nil
}

// composeObservability is what the Compose checks read beside compose.yaml.
type composeObservability struct {
	collector collectorConfig
	prom      promConfig
}

func loadComposeObservability(t testing.TB) composeObservability {
	t.Helper()
	var o composeObservability
	b, err := os.ReadFile(filepath.Join(composeDir(t), "otel-collector.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if o.collector, err = decodeCollector(b); err != nil {
		t.Fatalf("otel-collector.yaml: %v", err)
	}
	if b, err = os.ReadFile(filepath.Join(composeDir(t), "prometheus.yml")); err != nil {
		t.Fatal(err)
	}
	if o.prom, err = decodeProm(b); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	return o
}

// composeObservabilityProblems checks the collector and Prometheus of compose.yaml against
// their files and the platform: the collector runs the pinned image with its file, every
// process sends it OTLP, and Prometheus scrapes every process's admin port.
func composeObservabilityProblems(p *types.Project, o composeObservability, bins []binary) []string {
	problems := collectorProblems(o.collector)
	problems = append(problems, promProblems(o.prom)...)
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	col, ok := p.Services["otel-collector"]
	if !ok {
		return append(problems, "compose.yaml runs no otel-collector")
	}
	if col.Image != collectorImage {
		add("otel-collector runs %s, want %s (whose components the checks know)", col.Image, collectorImage)
	}
	mounted := false
	for _, v := range col.Volumes {
		if filepath.Base(v.Source) == "otel-collector.yaml" && slices.Contains(col.Command, "--config="+v.Target) {
			mounted = true
		}
	}
	if !mounted {
		add("otel-collector does not run with otel-collector.yaml (mounted, and named by --config=)")
	}
	otlpPort, err := o.collector.otlpHTTPPort()
	if err != nil {
		return append(problems, err.Error())
	}

	targets := map[string]string{}
	for _, sc := range o.prom.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			add("job %s scrapes %s, but the platform serves /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				targets[target] = sc.JobName
				host, _, err := net.SplitHostPort(target)
				if _, ok := p.Services[host]; err != nil || !ok {
					add("job %s scrapes %s, which is not a service of compose.yaml", sc.JobName, target)
				}
			}
		}
	}
	for _, b := range bins {
		s, ok := p.Services[b.Name]
		if !ok {
			continue
		}
		env := environment(s)
		problems = append(problems, otlpProblems(b.Name, env, "otel-collector", otlpPort)...)
		port, problem := adminPort(b.Name, adminListen(b.Name, env, ""))
		if problem != "" {
			add("%s", problem)
			continue
		}
		if target := net.JoinHostPort(b.Name, port); targets[target] == "" {
			add("prometheus.yml does not scrape %s at %s, its admin listener", b.Name, target)
		}
	}
	return problems
}

func TestComposeObservability(t *testing.T) {
	t.Parallel()
	project, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	for _, problem := range composeObservabilityProblems(project, loadComposeObservability(t), discoverT(t)) {
		t.Error(problem)
	}
}

// kubePrometheus reads deploy/k8s/prometheus.yml, the scrape job for a cluster's Prometheus.
func kubePrometheus(t testing.TB) promConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k8sDir(t), "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := decodeProm(b)
	if err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	return c
}

// kubeObservabilityProblems checks one build's collector and scraping: the collector's
// Deployment runs the pinned image with its ConfigMap, probes its health port and exposes its
// OTLP port through its Service, every platform container sends it OTLP and declares its
// admin port, and prom's pod job scrapes exactly the platform's pods, each at its admin port.
func kubeObservabilityProblems(m *manifests, prom promConfig, bins []binary) []string {
	problems := promProblems(prom)
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	data, ok := m.configMap("otel-collector")
	if !ok {
		return append(problems, "no ConfigMap otel-collector")
	}
	col, err := decodeCollector([]byte(data["config.yaml"]))
	if err != nil {
		return append(problems, fmt.Sprintf("ConfigMap otel-collector's config.yaml: %v", err))
	}
	problems = append(problems, collectorProblems(col)...)
	otlpPort, err := col.otlpHTTPPort()
	if err != nil {
		return append(problems, err.Error())
	}
	healthPort, err := col.healthPort()
	if err != nil {
		add("%v", err)
	}
	var collector *corev1.PodTemplateSpec
	for i := range m.Deployments {
		if m.Deployments[i].Name == "otel-collector" {
			collector = &m.Deployments[i].Spec.Template
		}
	}
	if collector == nil {
		return append(problems, "no Deployment otel-collector")
	}
	c := collector.Spec.Containers[0]
	if c.Image != collectorImage {
		add("otel-collector runs %s, want %s (whose components the checks know)", c.Image, collectorImage)
	}
	mountedAt := ""
	for _, vm := range c.VolumeMounts {
		for _, v := range collector.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == "otel-collector" {
				mountedAt = vm.MountPath
			}
		}
	}
	if mountedAt == "" || !slices.Contains(append(c.Command, c.Args...), "--config="+mountedAt+"/config.yaml") {
		add("otel-collector does not run with its ConfigMap's config.yaml (mounted, and named by --config=)")
	}
	portName := func(number string) string {
		for _, p := range c.Ports {
			if strconv.Itoa(int(p.ContainerPort)) == number {
				return p.Name
			}
		}
		return ""
	}
	for what, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || (probe.HTTPGet.Port.String() != healthPort && probe.HTTPGet.Port.String() != portName(healthPort)) {
			add("otel-collector's %s probe does not ask the health_check extension's port %s", what, healthPort)
		}
	}
	// The Service port that leads to the receiver's OTLP/HTTP port, which the platform must use.
	servicePort := ""
	for _, s := range m.Services {
		if s.Name != "otel-collector" {
			continue
		}
		for _, p := range s.Spec.Ports {
			if tp := p.TargetPort; (tp.Type == intstr.Int && strconv.Itoa(tp.IntValue()) == otlpPort) || (tp.Type == intstr.String && tp.StrVal != "" && tp.StrVal == portName(otlpPort)) {
				servicePort = strconv.Itoa(int(p.Port))
			}
		}
	}
	if servicePort == "" {
		return append(problems, fmt.Sprintf("no port of Service otel-collector leads to the OTLP/HTTP port %s", otlpPort))
	}

	gatewayFile := ""
	if data, ok := m.configMap("gateway-config"); ok {
		gatewayFile = data["gateway.yaml"]
	}
	platform := map[string]binary{}
	for _, b := range bins {
		platform[b.Name] = b
	}
	var job *scrapeConfig
	for i, sc := range prom.ScrapeConfigs {
		if len(sc.KubernetesSDConfigs) > 0 {
			job = &prom.ScrapeConfigs[i]
		}
	}
	if job == nil {
		return append(problems, "prometheus.yml has no job that discovers pods")
	}
	for _, d := range m.Deployments {
		pod := d.Spec.Template
		watched := slices.ContainsFunc(job.KubernetesSDConfigs, func(sd kubernetesSD) bool {
			return len(sd.Namespaces.Names) == 0 || slices.Contains(sd.Namespaces.Names, d.Namespace)
		})
		var scraped []string
		for _, target := range podTargets(pod, d.Namespace, "10.0.0.7") {
			if out, kept := relabel(target, job.RelabelConfigs); kept && watched {
				scraped = append(scraped, out["__address__"]+out["__metrics_path__"])
			}
		}
		slices.Sort(scraped)
		scraped = slices.Compact(scraped)
		ctr := pod.Spec.Containers[0]
		if _, ok := platform[ctr.Name]; !ok {
			if len(scraped) > 0 {
				add("%s is scraped at %v, but serves no platform metrics", d.Name, scraped)
			}
			continue
		}
		env, _, _ := m.containerEnv(ctr)
		problems = append(problems, otlpProblems(ctr.Name, env, "otel-collector", servicePort)...)
		port, problem := adminPort(ctr.Name, adminListen(ctr.Name, env, gatewayFile))
		if problem != "" {
			add("%s", problem)
			continue
		}
		if !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool {
			return p.Name == "admin" && strconv.Itoa(int(p.ContainerPort)) == port
		}) {
			add("container %s declares no port named admin at its admin listener's %s", ctr.Name, port)
		}
		if want := []string{"10.0.0.7:" + port + "/metrics"}; !slices.Equal(scraped, want) {
			add("prometheus.yml scrapes %s at %v, want its admin listener %v", d.Name, scraped, want)
		}
	}
	return problems
}

func TestKubernetesObservability(t *testing.T) {
	t.Parallel()
	bins := discoverT(t)
	prom := kubePrometheus(t)
	for _, o := range overlays {
		t.Run(o.Dir, func(t *testing.T) {
			t.Parallel()
			for _, problem := range kubeObservabilityProblems(kustomize(t, o.Dir, o.Extra), prom, bins) {
				t.Error(problem)
			}
		})
	}
}

func TestObservabilityChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	bins := discoverT(t)
	t.Run("compose", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name    string
			edit    func(p *types.Project, o *composeObservability)
			problem string
		}{
			{name: "as committed", edit: func(*types.Project, *composeObservability) {}},
			{name: "an undefined exporter", edit: func(_ *types.Project, o *composeObservability) {
				o.collector.Service.Pipelines["traces"] = pipelineWith(o.collector.Service.Pipelines["traces"], "jaeger")
			}, problem: "pipeline traces exports to [jaeger], which are not defined"},
			{name: "a component the image lacks", edit: func(_ *types.Project, o *composeObservability) {
				o.collector.Exporters["datadog"] = nil
			}, problem: "exporters datadog: " + collectorImage + " has no such component"},
			{name: "no metrics pipeline", edit: func(_ *types.Project, o *composeObservability) {
				delete(o.collector.Service.Pipelines, "metrics")
			}, problem: "no metrics pipeline receives from otlp"},
			{name: "OTLP to the wrong port", edit: func(p *types.Project, _ *composeObservability) {
				v := "http://otel-collector:4317"
				p.Services["blog"].Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = &v
			}, problem: `blog sends OTLP to "http://otel-collector:4317"`},
			{name: "a service left unscraped", edit: func(_ *types.Project, o *composeObservability) {
				o.prom.ScrapeConfigs = slices.DeleteFunc(o.prom.ScrapeConfigs, func(sc scrapeConfig) bool { return sc.JobName == "authz" })
			}, problem: "does not scrape authz at authz:9080"},
			{name: "an admin listener on loopback", edit: func(p *types.Project, _ *composeObservability) {
				v := "127.0.0.1:9080"
				p.Services["identity"].Environment["BASALT_ADMIN_LISTEN"] = &v
			}, problem: "identity's admin listener 127.0.0.1:9080 is not reachable"},
			{name: "a timeout past the interval", edit: func(_ *types.Project, o *composeObservability) {
				o.prom.Global.ScrapeTimeout = "1m"
			}, problem: "is longer than scrape_interval"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				project, err := loadCompose(t, exampleEnv(t))
				if err != nil {
					t.Fatal(err)
				}
				o := loadComposeObservability(t)
				tt.edit(project, &o)
				wantProblem(t, composeObservabilityProblems(project, o, bins), tt.problem)
			})
		}
	})
	t.Run("kubernetes", func(t *testing.T) {
		t.Parallel()
		pod := func(m *manifests, name string) *corev1.PodTemplateSpec {
			for i := range m.Deployments {
				if m.Deployments[i].Name == name {
					return &m.Deployments[i].Spec.Template
				}
			}
			t.Fatalf("no Deployment %s", name)
			return nil
		}
		tests := []struct {
			name    string
			edit    func(m *manifests, prom *promConfig)
			problem string
		}{
			{name: "as built", edit: func(*manifests, *promConfig) {}},
			{name: "a wrong port annotation", edit: func(m *manifests, _ *promConfig) {
				pod(m, "blog").Annotations["prometheus.io/port"] = "8080"
			}, problem: "scrapes blog at [10.0.0.7:8080/metrics], want its admin listener [10.0.0.7:9080/metrics]"},
			{name: "no scrape annotation", edit: func(m *manifests, _ *promConfig) {
				delete(pod(m, "gateway").Annotations, "prometheus.io/scrape")
			}, problem: "scrapes gateway at [], want"},
			{name: "the collector scraped", edit: func(m *manifests, _ *promConfig) {
				pod(m, "otel-collector").Annotations = map[string]string{"prometheus.io/scrape": "true"}
			}, problem: "otel-collector is scraped at"},
			{name: "no admin port declared", edit: func(m *manifests, _ *promConfig) {
				pod(m, "audit").Spec.Containers[0].Ports = pod(m, "audit").Spec.Containers[0].Ports[:1]
			}, problem: "container audit declares no port named admin"},
			{name: "a relabelling that keeps nothing", edit: func(_ *manifests, prom *promConfig) {
				regex := "yes"
				prom.ScrapeConfigs[0].RelabelConfigs[0].Regex = &regex
			}, problem: "scrapes auth at [], want"},
			{name: "another namespace", edit: func(_ *manifests, prom *promConfig) {
				prom.ScrapeConfigs[0].KubernetesSDConfigs[0].Namespaces.Names = []string{"default"}
			}, problem: "scrapes identity at [], want"},
			{name: "the collector's Service without OTLP/HTTP", edit: func(m *manifests, _ *promConfig) {
				for i := range m.Services {
					if m.Services[i].Name == "otel-collector" {
						m.Services[i].Spec.Ports = m.Services[i].Spec.Ports[:1]
					}
				}
			}, problem: "no port of Service otel-collector leads to the OTLP/HTTP port 4318"},
			{name: "the collector probed elsewhere", edit: func(m *manifests, _ *promConfig) {
				pod(m, "otel-collector").Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromString("otlp-http")
			}, problem: "readiness probe does not ask the health_check extension's port 13133"},
		}
		prom := kubePrometheus(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				m := kustomize(t, "overlays/dev", nil)
				p := prom
				p.ScrapeConfigs = slices.Clone(prom.ScrapeConfigs)
				p.ScrapeConfigs[0].RelabelConfigs = slices.Clone(prom.ScrapeConfigs[0].RelabelConfigs)
				p.ScrapeConfigs[0].KubernetesSDConfigs = slices.Clone(prom.ScrapeConfigs[0].KubernetesSDConfigs)
				tt.edit(m, &p)
				wantProblem(t, kubeObservabilityProblems(m, p, bins), tt.problem)
			})
		}
	})
}

// pipelineWith returns p exporting to one more exporter.
func pipelineWith(p pipeline, exporter string) pipeline {
	p.Exporters = append(slices.Clone(p.Exporters), exporter)
	return p
}
