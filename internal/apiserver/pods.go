package apiserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/instance"
	"github.com/berth-registry/berth/internal/settings"
	"github.com/berth-registry/berth/internal/store"
)

// The registry's instances seen as the reference platform shows its
// registry: a Deployment image-registry in openshift-image-registry and a
// Pod per instance (one per heartbeat row in the store), read-only. Other
// namespaces have none. Only those who may read pods (or deployments) in
// that system project see them: cluster administrators.

const groupApps = "apps"

var (
	resPods        = auth.Resource{Resource: "pods"}
	resPodLog      = auth.Resource{Resource: "pods/log"}
	resDeployments = auth.Resource{Group: groupApps, Resource: "deployments"}
	registryLabels = map[string]string{instance.LabelKey: instance.LabelValue}
)

func (s *Server) podRoutes() {
	s.handle("GET /api/v1/pods", s.listPods)
	s.handle("GET /api/v1/namespaces/{ns}/pods", s.listPods)
	s.handle("GET /api/v1/namespaces/{ns}/pods/{name}", s.getPod)
	s.handle("GET /api/v1/namespaces/{ns}/pods/{name}/log", s.podLog)
	const apps = "/apis/" + groupApps + "/v1"
	s.handle("GET "+apps+"/deployments", s.listDeployments)
	s.handle("GET "+apps+"/namespaces/{ns}/deployments", s.listDeployments)
	s.handle("GET "+apps+"/namespaces/{ns}/deployments/{name}", s.getDeployment)
}

// instancesIn returns the heartbeat rows shown in namespace ns ("" for
// all namespaces).
func (s *Server) instancesIn(ctx context.Context, ns string) ([]store.Instance, error) {
	if ns != "" && ns != instance.Namespace {
		return nil, nil
	}
	return s.opts.Store.Instances(ctx)
}

// podPhase is how an instance's row reads as a pod's state: Terminating
// while it shuts down, Unknown once it stopped renewing its row (killed,
// or its machine lost), else Running.
func podPhase(in store.Instance, now time.Time) (phase corev1.PodPhase, status string) {
	switch {
	case !in.Stopping.IsZero():
		return corev1.PodRunning, "Terminating"
	case !in.Live(now, instance.StaleAfter):
		return corev1.PodUnknown, "Unknown"
	default:
		return corev1.PodRunning, "Running"
	}
}

func podOf(in store.Instance, now time.Time) *corev1.Pod {
	ready := in.ReadyAt(now, instance.StaleAfter)
	phase, _ := podPhase(in, now)
	started := metav1.NewTime(in.Started)
	condition := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		status := corev1.ConditionTrue
		if !ok {
			status = corev1.ConditionFalse
		}
		return corev1.PodCondition{Type: t, Status: status, LastTransitionTime: started}
	}
	labels := map[string]string{instance.LabelKey: instance.LabelValue, "pod-template-hash": instance.TemplateHash(in.Version)}
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: in.Name, Namespace: instance.Namespace, UID: uidOf(in.ID), CreationTimestamp: started, Labels: labels,
			Annotations: map[string]string{
				"berth.io/instance-id":    in.ID,
				"berth.io/listen":         in.Listen,
				"berth.io/last-heartbeat": in.Heartbeat.UTC().Format(time.RFC3339),
			},
		},
		Spec: corev1.PodSpec{
			NodeName: in.Host,
			Containers: []corev1.Container{{
				Name: instance.Container, Image: "berth:" + in.Version, Ports: containerPorts(in.Listen),
			}},
		},
		Status: corev1.PodStatus{
			Phase:     phase,
			StartTime: &started,
			Conditions: []corev1.PodCondition{
				condition(corev1.PodScheduled, true), condition(corev1.PodInitialized, true),
				condition(corev1.ContainersReady, ready), condition(corev1.PodReady, ready),
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: instance.Container, Image: "berth:" + in.Version, Ready: ready,
				RestartCount: int32(in.Restarts), Started: new(phase == corev1.PodRunning),
				ContainerID: "berth://" + in.ID,
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			}},
		},
	}
	if !in.Stopping.IsZero() {
		pod.DeletionTimestamp = new(metav1.NewTime(in.Stopping))
	}
	return pod
}

// uidOf is an instance id as a uid (it is a UUID already).
func uidOf(id string) types.UID { return types.UID(id) }

// containerPorts is the port an instance listens on.
func containerPorts(listen string) []corev1.ContainerPort {
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		return nil
	}
	port, err := strconv.ParseInt(p, 10, 32)
	if err != nil || port <= 0 {
		return nil
	}
	return []corev1.ContainerPort{{ContainerPort: int32(port), Protocol: corev1.ProtocolTCP}}
}

var podColumns = []metav1.TableColumnDefinition{columnName,
	column("Ready", "The number of containers ready out of the total.", 0),
	column("Status", "The pod's state: Running, Terminating while its instance shuts down, Unknown once it stopped renewing its heartbeat.", 0),
	column("Restarts", "The number of times the container restarted.", 0),
	columnAge,
	column("Node", "The host the instance runs on.", 1),
}

func podTable(pods []*corev1.Pod, now time.Time, rows []store.Instance) metav1.Table {
	t := newTable(podColumns, "", "")
	for i, p := range pods {
		ready := 0
		if p.Status.ContainerStatuses[0].Ready {
			ready = 1
		}
		_, status := podPhase(rows[i], now)
		t.Rows = append(t.Rows, metaRow(p.ObjectMeta, p.Name, fmt.Sprintf("%d/1", ready), status,
			strconv.Itoa(int(p.Status.ContainerStatuses[0].RestartCount)), age(p), p.Spec.NodeName))
	}
	return t
}

func (s *Server) listPods(w http.ResponseWriter, r *http.Request) error {
	q, err := parseListQuery(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, "list", resPods, q.ns); err != nil {
		return err
	}
	rows, err := s.instancesIn(r.Context(), q.ns)
	if err != nil {
		return err
	}
	now := time.Now()
	var pods []*corev1.Pod
	var shown []store.Instance
	for _, in := range rows {
		if p := podOf(in, now); q.selects(p) {
			pods, shown = append(pods, p), append(shown, in)
		}
	}
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, podTable(pods, now, shown))
	}
	items := make([]corev1.Pod, 0, len(pods))
	for _, p := range pods {
		items = append(items, *p)
	}
	return writeJSONOrYAML(w, r, http.StatusOK, corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}, Items: items})
}

// podNamed finds the row of pod name in ns, after the caller was allowed
// verb on res there.
func (s *Server) podNamed(r *http.Request, verb string, res auth.Resource) (store.Instance, error) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := s.authorize(r, verb, res, ns); err != nil {
		return store.Instance{}, err
	}
	rows, err := s.instancesIn(r.Context(), ns)
	if err != nil {
		return store.Instance{}, err
	}
	for _, in := range rows {
		if in.Name == name {
			return in, nil
		}
	}
	return store.Instance{}, notFound("pods", name)
}

func (s *Server) getPod(w http.ResponseWriter, r *http.Request) error {
	in, err := s.podNamed(r, "get", resPods)
	if err != nil {
		return err
	}
	now := time.Now()
	p := podOf(in, now)
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, podTable([]*corev1.Pod{p}, now, []store.Instance{in}))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, p)
}

// deploymentOf is the registry's Deployment as its instances make it.
func (s *Server) deploymentOf(ctx context.Context, rows []store.Instance) (*appsv1.Deployment, error) {
	ns, err := s.opts.Store.Project(ctx, instance.Namespace)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var live, ready, current int32
	var newest store.Instance // its version and port are the template's
	for _, in := range rows {
		if in.Live(now, instance.StaleAfter) {
			live++
		}
		if in.ReadyAt(now, instance.StaleAfter) {
			ready++
		}
		newest = in
	}
	version := newest.Version
	for _, in := range rows {
		if in.Version == version {
			current++
		}
	}
	// spec.replicas is the registry Config's: how many should run (Berth
	// starts none itself; its deployment does). Before the operator has
	// applied a Config, it is what runs.
	replicas := live
	if set := settings.From(ctx); set.Generation > 0 {
		replicas = int32(set.Replicas)
	}
	available := func(ok bool) appsv1.DeploymentCondition {
		c := appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
			Reason: "MinimumReplicasAvailable", Message: "Deployment has minimum availability."}
		if !ok {
			c.Status, c.Reason, c.Message = corev1.ConditionFalse, "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
		}
		return c
	}
	created := metav1.NewTime(ns.Created)
	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: groupApps + "/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name: instance.Deployment, Namespace: instance.Namespace, Labels: registryLabels, Generation: 1,
			UID:               uidOf(uuid.NewSHA1(uuid.NameSpaceURL, []byte("berth:deployments/"+instance.Namespace+"/"+instance.Deployment)).String()),
			CreationTimestamp: created,
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: registryLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: registryLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{templateContainer(newest)}},
			},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
		},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 1, Replicas: int32(len(rows)), UpdatedReplicas: current,
			ReadyReplicas: ready, AvailableReplicas: ready, UnavailableReplicas: max(int32(len(rows))-ready, 0),
			Conditions: []appsv1.DeploymentCondition{available(ready > 0 && ready >= replicas)},
		},
	}
	return d, nil
}

// templateContainer is the registry's container as an instance runs it.
func templateContainer(in store.Instance) corev1.Container {
	return corev1.Container{Name: instance.Container, Image: "berth:" + in.Version, Ports: containerPorts(in.Listen)}
}

var deploymentColumns = []metav1.TableColumnDefinition{columnName,
	column("Ready", "Ready replicas out of those wanted.", 0),
	{Name: "Up-to-date", Type: "integer", Description: "Replicas running the newest instance's version."},
	{Name: "Available", Type: "integer", Description: "Replicas ready to serve."},
	columnAge,
	column("Containers", "The containers of the pods.", 1),
	column("Images", "Their images.", 1),
	column("Selector", "The label selector of the pods.", 1),
}

func deploymentTable(items []*appsv1.Deployment) metav1.Table {
	t := newTable(deploymentColumns, "", "")
	for _, d := range items {
		c := d.Spec.Template.Spec.Containers[0]
		t.Rows = append(t.Rows, metaRow(d.ObjectMeta, d.Name,
			fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, *d.Spec.Replicas), d.Status.UpdatedReplicas, d.Status.AvailableReplicas,
			age(d), c.Name, c.Image, instance.LabelKey+"="+instance.LabelValue))
	}
	return t
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) error {
	q, err := parseListQuery(r)
	if err != nil {
		return err
	}
	if err := s.authorize(r, "list", resDeployments, q.ns); err != nil {
		return err
	}
	var items []*appsv1.Deployment
	if q.ns == "" || q.ns == instance.Namespace {
		rows, err := s.opts.Store.Instances(r.Context())
		if err != nil {
			return err
		}
		d, err := s.deploymentOf(r.Context(), rows)
		if err != nil {
			return err
		}
		if q.selects(d) {
			items = append(items, d)
		}
	}
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, deploymentTable(items))
	}
	list := appsv1.DeploymentList{TypeMeta: metav1.TypeMeta{APIVersion: groupApps + "/v1", Kind: "DeploymentList"}, Items: []appsv1.Deployment{}}
	for _, d := range items {
		list.Items = append(list.Items, *d)
	}
	return writeJSONOrYAML(w, r, http.StatusOK, list)
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request) error {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := s.authorize(r, "get", resDeployments, ns); err != nil {
		return err
	}
	if ns != instance.Namespace || name != instance.Deployment {
		return notFound("deployments.apps", name)
	}
	rows, err := s.opts.Store.Instances(r.Context())
	if err != nil {
		return err
	}
	d, err := s.deploymentOf(r.Context(), rows)
	if err != nil {
		return err
	}
	if wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, deploymentTable([]*appsv1.Deployment{d}))
	}
	return writeJSONOrYAML(w, r, http.StatusOK, d)
}

// instanceHint says where a pod's own instance listens, for a request this
// instance cannot serve.
func instanceHint(in store.Instance) string { return in.Listen + " on " + in.Host }
