package validate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	kustypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifests is one set of Kubernetes objects, decoded into the API's own types.
type manifests struct {
	Namespaces   []corev1.Namespace
	ConfigMaps   []corev1.ConfigMap
	Secrets      []corev1.Secret
	Services     []corev1.Service
	Deployments  []appsv1.Deployment
	StatefulSets []appsv1.StatefulSet
	PDBs         []policyv1.PodDisruptionBudget
	HPAs         []autoscalingv2.HorizontalPodAutoscaler
}

// add decodes one YAML document strictly into the type its apiVersion and kind name: a field
// the type does not have, a duplicate key or a kind this platform does not use is an error.
func (m *manifests) add(doc []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return err
	}
	var err error
	switch meta.APIVersion + " " + meta.Kind {
	case "v1 Namespace":
		m.Namespaces, err = decodeAppend(doc, m.Namespaces)
	case "v1 ConfigMap":
		m.ConfigMaps, err = decodeAppend(doc, m.ConfigMaps)
	case "v1 Secret":
		m.Secrets, err = decodeAppend(doc, m.Secrets)
	case "v1 Service":
		m.Services, err = decodeAppend(doc, m.Services)
	case "apps/v1 Deployment":
		m.Deployments, err = decodeAppend(doc, m.Deployments)
	case "apps/v1 StatefulSet":
		m.StatefulSets, err = decodeAppend(doc, m.StatefulSets)
	case "policy/v1 PodDisruptionBudget":
		m.PDBs, err = decodeAppend(doc, m.PDBs)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		m.HPAs, err = decodeAppend(doc, m.HPAs)
	default:
		return fmt.Errorf("unexpected object %s %s", meta.APIVersion, meta.Kind)
	}
	return err
}

func decodeAppend[T any](doc []byte, list []T) ([]T, error) {
	var v T
	if err := yaml.UnmarshalStrict(doc, &v); err != nil {
		return list, err
	}
	return append(list, v), nil
}

// addAll decodes every document of a multi-document YAML stream.
func (m *manifests) addAll(r io.Reader) error {
	rd := k8syaml.NewYAMLReader(bufio.NewReader(r))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		if err := m.add(doc); err != nil {
			return err
		}
	}
}

func stripComments(doc []byte) []byte {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAll(doc, nil)
}

// workload is a Deployment or a StatefulSet: what owns pods.
type workload struct {
	Kind     string
	Name     string
	Selector map[string]string
	Pod      corev1.PodTemplateSpec
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, d := range m.Deployments {
		out = append(out, workload{Kind: "Deployment", Name: d.Name, Selector: matchLabels(d.Spec.Selector.MatchLabels), Pod: d.Spec.Template})
	}
	for _, s := range m.StatefulSets {
		out = append(out, workload{Kind: "StatefulSet", Name: s.Name, Selector: matchLabels(s.Spec.Selector.MatchLabels), Pod: s.Spec.Template})
	}
	return out
}

func matchLabels(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (m *manifests) configMap(name string) (map[string]string, bool) {
	for _, c := range m.ConfigMaps {
		if c.Name == name {
			return c.Data, true
		}
	}
	return nil, false
}

func (m *manifests) secret(name string) (map[string]string, bool) {
	for _, s := range m.Secrets {
		if s.Name == name {
			out := map[string]string{}
			for k, v := range s.Data {
				out[k] = string(v)
			}
			maps.Copy(out, s.StringData)
			return out, true
		}
	}
	return nil, false
}

// k8sDir is deploy/k8s.
func k8sDir(t testing.TB) string { return filepath.Join(repoRoot(t), "deploy", "k8s") }

// overlays are the folders kustomize builds, each with the extra files it needs that are never
// committed (prod's secrets.env).
var overlays = []struct {
	Dir string
	// Deployable is false for the base, which names images without tags and holds a
	// placeholder Secret: only the overlays are ever applied.
	Deployable bool
	Extra      map[string]string
}{
	{Dir: "base"},
	{Dir: "overlays/dev", Deployable: true},
	{Dir: "overlays/prod", Deployable: true, Extra: map[string]string{"secrets.env": strings.Join([]string{
		"database-url=postgres://basalt_app:test-password@postgres.example.internal:5432/basalt?sslmode=verify-full",
		"database-owner-url=postgres://basalt_owner:test-password@postgres.example.internal:5432/basalt?sslmode=verify-full",
		"internal-secret=prod-test-internal-secret-of-32-bytes-or-more",
		"auth-key-secret=cHJvZC10ZXN0LWF1dGgta2V5LXNlY3JldC0zMmJ5dGU=",
		"audit-checkpoint-key=cHJvZC10ZXN0LWF1ZGl0LWNoZWNrcG9pbnQta2V5LTM=",
		"admin-password=prod-test-admin-password",
		"gateway-redis-url=redis://redis.example.internal:6379/0",
		"consul-token=6f1c2e0a-prod-test-acl-token",
	}, "\n") + "\n"}},
}

// kustomize builds dir (relative to deploy/k8s) from a copy of deploy/k8s with extra files
// added, as `kustomize build` would, and decodes what it produced.
func kustomize(t testing.TB, dir string, extra map[string]string) *manifests {
	t.Helper()
	tmp := t.TempDir()
	if err := os.CopyFS(tmp, os.DirFS(k8sDir(t))); err != nil {
		t.Fatal(err)
	}
	for name, content := range extra {
		if err := os.WriteFile(filepath.Join(tmp, dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(tmp, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{}
	for _, r := range res.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.add(doc); err != nil {
			t.Fatalf("kustomize build %s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
		}
	}
	return m
}

func TestManifestFilesDecodeStrictly(t *testing.T) {
	t.Parallel()
	root := k8sDir(t)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found %d manifest files under %s", len(files), root)
	}
	for _, path := range files {
		rel, _ := filepath.Rel(root, path)
		t.Run(rel, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(path) == "kustomization.yaml" {
				var k kustypes.Kustomization
				if err := yaml.UnmarshalStrict(b, &k); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err := (&manifests{}).addAll(bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStrictDecodingRejectsMistakes(t *testing.T) {
	t.Parallel()
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
        - name: x
          image: x:1
%s`
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{name: "valid", doc: fmt.Sprintf(deployment, "")},
		{name: "unknown field", doc: fmt.Sprintf(deployment, "          imagePullPolicyy: Always\n"), wantErr: "unknown field"},
		{name: "misplaced field", doc: fmt.Sprintf(deployment, "      replicas: 2\n"), wantErr: "unknown field"},
		{name: "duplicate key", doc: fmt.Sprintf(deployment, "          image: x:2\n"), wantErr: "already set"},
		{name: "wrong type", doc: fmt.Sprintf(deployment, "          ports: [{containerPort: http}]\n"), wantErr: "cannot unmarshal"},
		{name: "unknown kind", doc: "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", wantErr: "unexpected object"},
		{name: "old apiVersion", doc: "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\n", wantErr: "unexpected object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var problems []string
			if err := (&manifests{}).addAll(strings.NewReader(tt.doc)); err != nil {
				problems = append(problems, err.Error())
			}
			wantProblem(t, problems, tt.wantErr)
		})
	}
}

// downward are the pod fields the manifests read through the downward API, with the values a
// test run stands in for them: loopback addresses where nothing listens on the ports the
// manifests use, so a binary that got past its configuration fails fast and touches nothing.
var downward = map[string]string{"status.podIP": "127.0.0.3", "status.hostIP": "127.0.0.2"}

// containerEnv resolves a container's environment as the kubelet would: envFrom first, then
// env in order, with $(NAME) references to earlier variables expanded. It returns the names
// set only to feed other variables' $(NAME) (the downward-API helpers) apart, and the problems
// found on the way (references to objects or keys that do not exist).
func (m *manifests) containerEnv(c corev1.Container) (env map[string]string, helpers map[string]bool, problems []string) {
	env, helpers = map[string]string{}, map[string]bool{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			data, ok := m.configMap(from.ConfigMapRef.Name)
			if !ok {
				problems = append(problems, fmt.Sprintf("envFrom names ConfigMap %s, which does not exist", from.ConfigMapRef.Name))
			}
			maps.Copy(env, data)
		case from.SecretRef != nil:
			data, ok := m.secret(from.SecretRef.Name)
			if !ok {
				problems = append(problems, fmt.Sprintf("envFrom names Secret %s, which does not exist", from.SecretRef.Name))
			}
			maps.Copy(env, data)
		}
	}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	referenced := map[string]bool{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = ref.ReplaceAllStringFunc(e.Value, func(s string) string {
				name := ref.FindStringSubmatch(s)[1]
				referenced[name] = true
				if v, ok := env[name]; ok {
					return v
				}
				problems = append(problems, fmt.Sprintf("%s refers to $(%s), which is not set before it", e.Name, name))
				return s
			})
		case e.ValueFrom.FieldRef != nil:
			v, ok := downward[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s reads %s, which this test cannot stand in for", e.Name, e.ValueFrom.FieldRef.FieldPath))
			}
			env[e.Name] = v
			helpers[e.Name] = true
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			data, ok := m.configMap(r.Name)
			v, has := data[r.Key]
			if !ok || !has {
				problems = append(problems, fmt.Sprintf("%s reads key %s of ConfigMap %s, which does not exist", e.Name, r.Key, r.Name))
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			data, ok := m.secret(r.Name)
			v, has := data[r.Key]
			// Kubernetes leaves the variable unset when an optional key is missing; for the
			// platform's settings that is the same as empty.
			if optional := r.Optional != nil && *r.Optional; !ok || !has && !optional {
				problems = append(problems, fmt.Sprintf("%s reads key %s of Secret %s, which does not exist", e.Name, r.Key, r.Name))
			}
			env[e.Name] = v
		default:
			problems = append(problems, fmt.Sprintf("%s has a valueFrom this test does not know", e.Name))
		}
	}
	// A downward-API variable is a helper only while another setting refers to it.
	for name := range helpers {
		if !referenced[name] {
			delete(helpers, name)
		}
	}
	return env, helpers, problems
}

// crossProblems checks that the objects of one build fit together and fit the binaries.
func crossProblems(m *manifests, p *built) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	wls := m.workloads()
	podsOf := func(sel map[string]string) []workload {
		var out []workload
		for _, w := range wls {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.Pod.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	bins := map[string]binary{}
	for _, b := range p.bins {
		bins[b.Name] = b
	}

	for _, w := range wls {
		if !labels.SelectorFromSet(w.Selector).Matches(labels.Set(w.Pod.Labels)) || len(w.Selector) == 0 {
			add("%s %s: its selector %v does not select its own pods %v", w.Kind, w.Name, w.Selector, w.Pod.Labels)
		}
		problems = append(problems, podProblems(m, p, w, bins)...)
	}
	for _, b := range p.bins {
		for kind, names := range m.names() {
			if !names[b.Name] {
				add("%s has no %s", b.Name, kind)
			}
		}
	}
	for _, s := range m.Services {
		owners := podsOf(s.Spec.Selector)
		if len(owners) != 1 {
			add("Service %s selects the pods of %d workloads, want exactly 1", s.Name, len(owners))
			continue
		}
		w := owners[0]
		if !maps.Equal(s.Spec.Selector, w.Selector) {
			add("Service %s selects %v, not exactly %s %s's pods (%v)", s.Name, s.Spec.Selector, w.Kind, w.Name, w.Selector)
		}
		for _, port := range s.Spec.Ports {
			if !hasPort(w.Pod.Spec, port.TargetPort.String()) {
				add("Service %s port %s targets %s, which %s %s does not declare", s.Name, port.Name, port.TargetPort.String(), w.Kind, w.Name)
			}
		}
	}
	for _, pdb := range m.PDBs {
		if pdb.Spec.Selector == nil || len(podsOf(pdb.Spec.Selector.MatchLabels)) != 1 {
			add("PodDisruptionBudget %s does not select the pods of exactly one workload", pdb.Name)
		}
		if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
			add("PodDisruptionBudget %s must set one of minAvailable and maxUnavailable", pdb.Name)
		}
	}
	for _, h := range m.HPAs {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || !m.names()["Deployment"][ref.Name] {
			add("HorizontalPodAutoscaler %s targets %s %s, which does not exist", h.Name, ref.Kind, ref.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			add("HorizontalPodAutoscaler %s needs minReplicas at most maxReplicas", h.Name)
		}
	}
	if !slices.ContainsFunc(m.HPAs, func(h autoscalingv2.HorizontalPodAutoscaler) bool { return h.Spec.ScaleTargetRef.Name == "gateway" }) {
		add("the gateway has no HorizontalPodAutoscaler")
	}
	return problems
}

// hasPort reports whether a pod declares the port a Service or probe names (by name or
// number).
func hasPort(pod corev1.PodSpec, port string) bool {
	for _, c := range pod.Containers {
		for _, cp := range c.Ports {
			if cp.Name == port || fmt.Sprint(cp.ContainerPort) == port {
				return true
			}
		}
	}
	return false
}

// podProblems checks one workload's pods: security, resources, probes, images, and for the
// platform's containers that every environment variable is one the binary binds.
func podProblems(m *manifests, p *built, w workload, bins map[string]binary) []string {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s %s: ", w.Kind, w.Name)+fmt.Sprintf(format, args...))
	}
	spec := w.Pod.Spec
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		add("pods must set runAsNonRoot")
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			if _, ok := m.configMap(v.ConfigMap.Name); !ok {
				add("volume %s mounts ConfigMap %s, which does not exist", v.Name, v.ConfigMap.Name)
			}
		}
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			add("container %s must have a read-only root, no privilege escalation and drop ALL capabilities", c.Name)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
			if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
				add("container %s needs a %s request and a limit no lower", c.Name, r)
			}
		}
		b, platform := bins[c.Name]
		for kind, probe := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			if probe == nil || probe.HTTPGet == nil {
				continue
			}
			// The platform's processes answer probes at these paths; others (the collector)
			// at their own.
			want := map[string]string{"startup": "/healthz", "liveness": "/healthz", "readiness": "/readyz"}[kind]
			if platform && probe.HTTPGet.Path != want {
				add("container %s's %s probe asks %s, want %s", c.Name, kind, probe.HTTPGet.Path, want)
			}
			if !hasPort(spec, probe.HTTPGet.Port.String()) {
				add("container %s's %s probe asks port %s, which the pod does not declare", c.Name, kind, probe.HTTPGet.Port.String())
			}
		}
		if c.ReadinessProbe == nil {
			add("container %s has no readiness probe", c.Name)
		}
		env, helpers, envProblems := m.containerEnv(c)
		for _, p := range envProblems {
			add("container %s: %s", c.Name, p)
		}
		if !platform {
			continue
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet == nil {
			add("container %s needs liveness and readiness probes on /healthz and /readyz", c.Name)
		}
		// A service migrates its schema before it listens, which may wait for another
		// replica's migration: only a startup probe keeps liveness from killing it meanwhile.
		if b.Service && (c.StartupProbe == nil || c.StartupProbe.HTTPGet == nil) {
			add("container %s migrates at start-up and needs a startup probe", c.Name)
		}
		var names []string
		for name := range env {
			if !helpers[name] {
				names = append(names, name)
			}
		}
		if bad := p.unbound(c.Name, names); len(bad) > 0 {
			add("container %s sets %v, which %s does not bind", c.Name, bad, c.Name)
		}
	}
	return problems
}

// runEnv is the environment one platform container would get, with the files its ConfigMap
// volumes hold written under dir and every path pointing at them or at the image's folders
// replaced by stand-ins.
func (m *manifests) runEnv(t testing.TB, pod corev1.PodSpec, c corev1.Container, paths imagePaths) map[string]string {
	t.Helper()
	env, _, _ := m.containerEnv(c)
	all := maps.Clone(paths)
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			data, _ := m.configMap(v.ConfigMap.Name)
			dir := t.TempDir()
			for name, content := range data {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			all[vm.MountPath] = dir
		}
	}
	return all.rewrite(rewriteFiles(t, env, all))
}

// rewriteFiles rewrites image paths inside the files the environment names (the gateway's
// configuration file names the console's folder), so the binary reads a consistent copy.
func rewriteFiles(t testing.TB, env map[string]string, paths imagePaths) map[string]string {
	t.Helper()
	out := maps.Clone(env)
	for k, v := range paths.rewrite(env) {
		if !strings.HasSuffix(v, ".yaml") {
			continue
		}
		b, err := os.ReadFile(v)
		if err != nil {
			continue
		}
		text := string(b)
		for from, to := range paths {
			text = strings.ReplaceAll(text, " "+from+"\n", " "+to+"\n")
		}
		copyPath := filepath.Join(t.TempDir(), filepath.Base(v))
		if err := os.WriteFile(copyPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		out[k] = copyPath
	}
	return out
}

func TestOverlays(t *testing.T) {
	t.Parallel()
	p := platform(t)
	console := consoleStandIn(t)
	for _, o := range overlays {
		t.Run(o.Dir, func(t *testing.T) {
			t.Parallel()
			m := kustomize(t, o.Dir, o.Extra)
			for _, problem := range crossProblems(m, p) {
				t.Error(problem)
			}
			for _, obj := range m.namespaced() {
				if obj.ns != "basalt" {
					t.Errorf("%s is in namespace %q, want basalt", obj.name, obj.ns)
				}
			}
			for _, w := range m.workloads() {
				for _, c := range w.Pod.Spec.Containers {
					if tag := imageTag(c.Image); o.Deployable && (tag == "" || tag == "latest") {
						t.Errorf("%s %s: container %s runs %s, which is not pinned to a tag", w.Kind, w.Name, c.Name, c.Image)
					}
				}
			}
			bins := map[string]binary{}
			for _, b := range p.bins {
				bins[b.Name] = b
			}
			for _, d := range m.Deployments {
				c := d.Spec.Template.Spec.Containers[0]
				b, ok := bins[c.Name]
				if !ok {
					continue
				}
				env := m.runEnv(t, d.Spec.Template.Spec, c, imagePaths{"/srv/console": console, "/srv/docs": console})
				msg := p.configError(t, c.Name, env)
				// The base's Secret is a placeholder that must never start a service; the
				// overlays' secrets must start everything.
				switch {
				case !o.Deployable && b.Service && msg == "":
					t.Errorf("%s started with the base's placeholder Secret", c.Name)
				case o.Deployable && msg != "":
					t.Errorf("%s refuses its configuration: %s", c.Name, msg)
				}
			}
		})
	}
}

type namespacedObj struct{ name, ns string }

func (m *manifests) namespaced() []namespacedObj {
	var out []namespacedObj
	out = appendNamespaced(out, "ConfigMap", m.ConfigMaps)
	out = appendNamespaced(out, "Secret", m.Secrets)
	out = appendNamespaced(out, "Service", m.Services)
	out = appendNamespaced(out, "Deployment", m.Deployments)
	out = appendNamespaced(out, "StatefulSet", m.StatefulSets)
	out = appendNamespaced(out, "PodDisruptionBudget", m.PDBs)
	return appendNamespaced(out, "HorizontalPodAutoscaler", m.HPAs)
}

// appendNamespaced adds each object of kind with its name and namespace.
func appendNamespaced[T any, P interface {
	*T
	metav1.Object
}](out []namespacedObj, kind string, objs []T) []namespacedObj {
	for i := range objs {
		o := P(&objs[i])
		out = append(out, namespacedObj{kind + " " + o.GetName(), o.GetNamespace()})
	}
	return out
}

func TestCrossProblemsCatchMistakes(t *testing.T) {
	t.Parallel()
	p := platform(t)
	deployment := func(m *manifests, name string) *appsv1.Deployment {
		for i := range m.Deployments {
			if m.Deployments[i].Name == name {
				return &m.Deployments[i]
			}
		}
		t.Fatalf("no Deployment %s", name)
		return nil
	}
	container := func(m *manifests, name string) *corev1.Container {
		return &deployment(m, name).Spec.Template.Spec.Containers[0]
	}
	tests := []struct {
		name    string
		edit    func(m *manifests)
		problem string // "" means none
	}{
		{name: "as built", edit: func(*manifests) {}},
		{name: "service selects nothing", edit: func(m *manifests) {
			m.Services[0].Spec.Selector = map[string]string{"app.kubernetes.io/name": "nobody"}
		}, problem: "selects the pods of 0 workloads"},
		{name: "unknown target port", edit: func(m *manifests) {
			for i := range m.Services {
				if m.Services[i].Name == "blog" {
					m.Services[i].Spec.Ports[0].TargetPort = intstr.FromString("grpc")
				}
			}
		}, problem: "targets grpc"},
		{name: "probe path", edit: func(m *manifests) {
			container(m, "auth").ReadinessProbe.HTTPGet.Path = "/health"
		}, problem: "readiness probe asks /health"},
		{name: "probe port", edit: func(m *manifests) {
			container(m, "auth").LivenessProbe.HTTPGet.Port = intstr.FromInt32(9999)
		}, problem: "port 9999"},
		{name: "no startup probe", edit: func(m *manifests) { container(m, "identity").StartupProbe = nil }, problem: "needs a startup probe"},
		{name: "missing secret key", edit: func(m *manifests) {
			c := container(m, "audit")
			for i := range c.Env {
				if c.Env[i].ValueFrom != nil && c.Env[i].ValueFrom.SecretKeyRef != nil {
					c.Env[i].ValueFrom.SecretKeyRef.Key = "no-such-key"
				}
			}
		}, problem: "key no-such-key of Secret"},
		{name: "missing ConfigMap", edit: func(m *manifests) {
			container(m, "blog").EnvFrom[0].ConfigMapRef.Name = "nope"
		}, problem: "ConfigMap nope, which does not exist"},
		{name: "unbound setting", edit: func(m *manifests) {
			c := container(m, "blog")
			c.Env = append(c.Env, corev1.EnvVar{Name: "BASALT_BLOG_THEME", Value: "dark"})
		}, problem: "[BASALT_BLOG_THEME], which blog does not bind"},
		{name: "gateway gets a service setting", edit: func(m *manifests) {
			c := container(m, "gateway")
			c.Env = append(c.Env, corev1.EnvVar{Name: "DATABASE_URL", Value: "postgres://x/y"})
		}, problem: "[DATABASE_URL], which gateway does not bind"},
		{name: "unused downward helper", edit: func(m *manifests) {
			c := container(m, "blog")
			c.Env = append(c.Env, corev1.EnvVar{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}})
		}, problem: "NODE_NAME"},
		{name: "writable root", edit: func(m *manifests) {
			container(m, "authz").SecurityContext.ReadOnlyRootFilesystem = nil
		}, problem: "read-only root"},
		{name: "no memory limit", edit: func(m *manifests) {
			delete(container(m, "authz").Resources.Limits, corev1.ResourceMemory)
		}, problem: "memory request and a limit"},
		{name: "budget for nothing", edit: func(m *manifests) {
			m.PDBs[0].Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "nobody"}
		}, problem: "does not select the pods of exactly one workload"},
		{name: "autoscaler for nothing", edit: func(m *manifests) {
			m.HPAs[0].Spec.ScaleTargetRef.Name = "gateway-old"
		}, problem: "targets Deployment gateway-old"},
		{name: "service without a Deployment", edit: func(m *manifests) {
			m.Deployments = slices.DeleteFunc(m.Deployments, func(d appsv1.Deployment) bool { return d.Name == "blog" })
		}, problem: "blog has no Deployment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := kustomize(t, "overlays/dev", nil)
			tt.edit(m)
			wantProblem(t, crossProblems(m, p), tt.problem)
		})
	}
}

// names returns the names of the objects every platform process must have, by kind.
func (m *manifests) names() map[string]map[string]bool {
	out := map[string]map[string]bool{"Deployment": {}, "Service": {}, "PodDisruptionBudget": {}}
	for _, o := range m.Deployments {
		out["Deployment"][o.Name] = true
	}
	for _, o := range m.Services {
		out["Service"][o.Name] = true
	}
	for _, o := range m.PDBs {
		out["PodDisruptionBudget"][o.Name] = true
	}
	return out
}
