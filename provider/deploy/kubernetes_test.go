package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/ociimage"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

const kubeDir = "docs/kubernetes"

// kubeObjects is every document of docs/kubernetes/*.yaml, decoded strictly into its Kubernetes API type.
type kubeObjects struct {
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	deployments     []*appsv1.Deployment
	pdbs            []*policyv1.PodDisruptionBudget
}

// decodeKube decodes one YAML document into the API type its apiVersion and kind name. Unknown fields, duplicate
// keys, a field name in the wrong case and values of the wrong type are errors, so every field name is one the
// Kubernetes API has, at the place it is written.
func decodeKube(doc []byte, into *kubeObjects) (string, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return "", fmt.Errorf("read apiVersion and kind: %w", err)
	}
	var obj interface{ GetNamespace() string }
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/ServiceAccount":
		o := &corev1.ServiceAccount{}
		into.serviceAccounts, obj = append(into.serviceAccounts, o), o
	case "v1/ConfigMap":
		o := &corev1.ConfigMap{}
		into.configMaps, obj = append(into.configMaps, o), o
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		into.deployments, obj = append(into.deployments, o), o
	case "policy/v1/PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		into.pdbs, obj = append(into.pdbs, o), o
	default:
		return "", fmt.Errorf("apiVersion %q kind %q: not a kind these manifests are meant to hold", tm.APIVersion, tm.Kind)
	}
	// As kubectl and the API server with strict field validation read it: YAML to JSON without type hints (so 1 is
	// no string), then a case-sensitive decode that rejects unknown and duplicate fields.
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return "", fmt.Errorf("%s: %w", tm.Kind, err)
	}
	strict, err := kjson.UnmarshalStrict(j, obj)
	if err := errors.Join(append(strict, err)...); err != nil {
		return "", fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if ns := obj.GetNamespace(); ns != "" {
		return "", fmt.Errorf("%s names namespace %q: the manifests are namespace-agnostic (kubectl apply -n)", tm.Kind, ns)
	}
	return tm.Kind, nil
}

func loadKube(t *testing.T) *kubeObjects {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, kubeDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", kubeDir, err)
	}
	objs := &kubeObjects{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for i := 1; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			if _, err := decodeKube(doc, objs); err != nil {
				t.Errorf("%s document %d: %v", filepath.Base(f), i, err)
			}
		}
	}
	if len(objs.serviceAccounts) != 1 || len(objs.configMaps) != 1 || len(objs.deployments) != 1 || len(objs.pdbs) != 1 {
		t.Fatalf("want one ServiceAccount, ConfigMap, Deployment and PodDisruptionBudget; got %d, %d, %d, %d",
			len(objs.serviceAccounts), len(objs.configMaps), len(objs.deployments), len(objs.pdbs))
	}
	return objs
}

func TestKubernetesDecoderIsStrict(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n",                       // misspelled
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {runAsUser: 1}}}\n", // misplaced
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: '1', A: '2'}\n",                         // duplicate
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: 1}\n",                                   // not a string
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {Replicas: 2}\n",                      // case
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: prod}\n",                                // namespaced
		"apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",                                                    // not ours
	} {
		if kind, err := decodeKube([]byte(doc), &kubeObjects{}); err == nil {
			t.Errorf("decoded %s without error:\n%s", kind, doc)
		}
	}
}

// makeVar reads `NAME ?= value` from the Makefile, with $(VERSION) expanded.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(n string) string {
		m := regexp.MustCompile(`(?m)^` + n + `\s*\??=\s*(.*?)\s*$`).FindSubmatch(raw)
		if m == nil {
			t.Fatalf("Makefile sets no %s", n)
		}
		return string(m[1])
	}
	return strings.ReplaceAll(get(name), "$(VERSION)", get("VERSION"))
}

func TestKubernetesManifests(t *testing.T) {
	objs := loadKube(t)
	sa, cm, dep, pdb := objs.serviceAccounts[0], objs.configMaps[0], objs.deployments[0], objs.pdbs[0]
	specs := map[string]settings.Spec{}
	for _, s := range settings.Specs() {
		specs[s.Name] = s
	}

	if r := dep.Spec.Replicas; r == nil || *r != 2 {
		t.Errorf("replicas = %s; want 2 (one queue group, one shared SERVER_XKEY_SEED)", deref(r))
	}
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("the Deployment's selector %v does not select its pods %v", dep.Spec.Selector, dep.Spec.Template.Labels)
	}
	psel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !psel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("the PodDisruptionBudget's selector %v does not select the pods %v", pdb.Spec.Selector, dep.Spec.Template.Labels)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable = %v; want 1 (of 2: a drain takes one replica at a time)", pdb.Spec.MinAvailable)
	}

	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("serviceAccountName %q; want the ServiceAccount %q", pod.ServiceAccountName, sa.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: the pod gets only the projected token with Infisical's audience")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if want := makeVar(t, "IMAGE"); c.Image != want {
		t.Errorf("image %q; want %q, what make image tags", c.Image, want)
	}
	if len(c.Command) != 0 || !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("command %q args %q; want the image's entrypoint with args [serve]", c.Command, c.Args)
	}

	// Settings: non-secret ones from the ConfigMap, the seed from a Secret; all of them names the code knows.
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name || c.EnvFrom[0].Prefix != "" {
		t.Errorf("envFrom %+v; want the ConfigMap %q, unprefixed", c.EnvFrom, cm.Name)
	}
	for k := range cm.Data {
		sp, ok := specs[k]
		switch {
		case !ok:
			t.Errorf("ConfigMap key %s is not a setting the provider reads", k)
		case sp.Secret:
			t.Errorf("ConfigMap key %s is a secret setting: put it in a Secret", k)
		}
	}
	secretRefs := map[string][]string{} // Secret name -> keys
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			if !specs[e.Name].Secret || ref.Key != e.Name {
				t.Errorf("env %s from Secret key %s: want a secret setting, under its own name", e.Name, ref.Key)
			}
			if ref.Optional != nil && *ref.Optional {
				t.Errorf("env %s: the Secret must not be optional (without it replicas would make different xkeys)", e.Name)
			}
			secretRefs[ref.Name] = append(secretRefs[ref.Name], ref.Key)
			continue
		}
		// Besides settings: the Go runtime's memory limit, and each replica's own OpenTelemetry instance id (so
		// replicas' metric series do not collide), made from the pod's name.
		runtimeEnv := map[string]bool{"GOMEMLIMIT": true, "POD_NAME": true, "OTEL_RESOURCE_ATTRIBUTES": true}
		if _, ok := specs[e.Name]; !ok && !runtimeEnv[e.Name] {
			t.Errorf("env %s is neither a setting nor one of %v", e.Name, runtimeEnv)
		}
		if _, dup := cm.Data[e.Name]; dup {
			t.Errorf("env %s is also in the ConfigMap; env wins, which hides the ConfigMap's value", e.Name)
		}
	}
	if len(secretRefs) != 1 || !slices.Contains(slices.Concat(slices.Collect(maps.Values(secretRefs))...), "SERVER_XKEY_SEED") {
		t.Fatalf("Secret references %v; want SERVER_XKEY_SEED from one Secret", secretRefs)
	}
	// The README's command makes that Secret with those keys.
	readme, err := os.ReadFile(filepath.Join(repoRoot, kubeDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, keys := range secretRefs {
		cmd := regexp.MustCompile(`kubectl (?:-n \S+ )?create secret generic ` + regexp.QuoteMeta(name) + `((?:\s*\\?\s*--from-literal=[A-Z_]+=\S+)+)`).FindSubmatch(readme)
		if cmd == nil {
			t.Fatalf("docs/kubernetes/README.md has no `kubectl create secret generic %s --from-literal=...`", name)
		}
		for _, k := range keys {
			if !bytes.Contains(cmd[1], []byte("--from-literal="+k+"=")) {
				t.Errorf("the README's kubectl create secret %s does not set %s", name, k)
			}
		}
	}

	// The ConfigMap's values load, once its placeholders are filled in, and choose Kubernetes auth.
	src := map[string]string{}
	for k, v := range cm.Data {
		if strings.Contains(v, "REPLACE") {
			v = standIn(t, k)
		}
		src[k] = v
	}
	src["SERVER_XKEY_SEED"] = standIn(t, "SERVER_XKEY_SEED")
	s, err := settings.Load(settings.Maps(src, nil))
	if err != nil {
		t.Fatalf("the ConfigMap's settings do not load: %v", err)
	}
	if s.Infisical.Method != infisical.MethodKubernetes {
		t.Errorf("INFISICAL_AUTH_METHOD %q; want kubernetes", s.Infisical.Method)
	}

	// The token path the provider reads is the projected service account token.
	var tokenFile string
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if sat := src.ServiceAccountToken; sat != nil {
					tokenFile = filepath.Join(m.MountPath, sat.Path)
					if sat.Audience == "" {
						t.Error("the projected token has no audience: give it Infisical's (the identity's allowed audience)")
					}
					if sat.ExpirationSeconds == nil || *sat.ExpirationSeconds < 600 {
						t.Errorf("token expirationSeconds %s; Kubernetes requires at least 600", deref(sat.ExpirationSeconds))
					}
					if !m.ReadOnly {
						t.Error("the token volume is mounted writable")
					}
				}
			}
		}
	}
	if tokenFile == "" || s.Infisical.KubernetesTokenPath != tokenFile {
		t.Errorf("INFISICAL_KUBERNETES_TOKEN_PATH %q; want the projected token's file %q", s.Infisical.KubernetesTokenPath, tokenFile)
	}

	// Probes reach the health listener HEALTH_ADDR opens.
	_, port, err := net.SplitHostPort(s.HealthAddr)
	if err != nil {
		t.Fatalf("HEALTH_ADDR %q: %v; the probes need it", s.HealthAddr, err)
	}
	var healthPort *corev1.ContainerPort
	for i := range c.Ports {
		if fmt.Sprint(c.Ports[i].ContainerPort) == port {
			healthPort = &c.Ports[i]
		}
	}
	if healthPort == nil {
		t.Fatalf("no container port %s for HEALTH_ADDR %s", port, s.HealthAddr)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/livez"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET of %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || (g.Port.String() != healthPort.Name && g.Port.String() != port) {
			t.Errorf("%s probe GET %s on port %s; want %s on %s (%s)", p.name, g.Path, g.Port.String(), p.path, healthPort.Name, port)
		}
	}

	// Resources from the measured RSS.
	lim, req := c.Resources.Limits[corev1.ResourceMemory], c.Resources.Requests[corev1.ResourceMemory]
	if lim.Cmp(resource.MustParse("64Mi")) != 0 {
		t.Errorf("memory limit %s; want 64Mi (about twice the measured peak RSS)", lim.String())
	}
	if req.IsZero() || req.Cmp(lim) > 0 {
		t.Errorf("memory request %s; want one, at most the limit %s", req.String(), lim.String())
	}
	if cpu := c.Resources.Requests[corev1.ResourceCPU]; cpu.IsZero() {
		t.Error("no CPU request")
	}

	// Restricted pod security.
	psc, csc := pod.SecurityContext, c.SecurityContext
	if psc == nil || csc == nil {
		t.Fatal("want a pod and a container securityContext")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != ociimage.UID ||
		psc.RunAsGroup == nil || *psc.RunAsGroup != ociimage.GID {
		t.Errorf("pod runAsNonRoot %v user %v group %v; want true and the image's %d:%d", psc.RunAsNonRoot, psc.RunAsUser,
			psc.RunAsGroup, ociimage.UID, ociimage.GID)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile %v; want RuntimeDefault", psc.SeccompProfile)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.RunAsNonRoot == nil || !*csc.RunAsNonRoot ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) > 0 {
		t.Errorf("container securityContext %+v; want readOnlyRootFilesystem, no privilege escalation, runAsNonRoot, drop ALL", csc)
	}
}

func deref[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// standIn is a valid value for a setting whose manifest value is a placeholder the user replaces.
func standIn(t *testing.T, name string) string {
	t.Helper()
	switch name {
	case "TRUSTED_ISSUERS":
		return testkeys.AccountKey(t)
	case "SERVER_XKEY_SEED":
		return testkeys.CurveSeed(t)
	}
	return "placeholder-" + strings.ToLower(name)
}
