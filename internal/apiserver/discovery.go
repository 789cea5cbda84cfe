package apiserver

import (
	"net/http"
	"sort"
	"strings"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
)

// KubernetesMinor is the Kubernetes minor version /version reports:
// kubectl's version dispatcher runs the kubectl of that minor, so it is
// one whose behaviour the tests establish.
const KubernetesMinor = "33"

func (s *Server) discoveryRoutes() {
	s.handle("GET /version", s.version)
	s.handle("GET /api", s.coreVersions)
	s.handle("GET /api/{$}", s.coreVersions)
	s.handle("GET /api/v1", s.resourceList("", "v1"))
	s.handle("GET /api/v1/{$}", s.resourceList("", "v1"))
	s.handle("GET /apis", s.groupList)
	s.handle("GET /apis/{$}", s.groupList)
	for _, gv := range groupVersions() {
		s.handle("GET /apis/"+gv.Group, s.group(gv))
		s.handle("GET /apis/"+gv.Group+"/"+gv.Version, s.resourceList(gv.Group, gv.Version))
	}
	s.handle("GET /openapi/v2", s.openAPIv2)
	s.openAPIRoutes()
}

// Discovery is public, as on Kubernetes: it says what kinds exist, not
// what is in them.
func (s *Server) version(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, version.Info{
		Major: "1", Minor: KubernetesMinor, GitVersion: "v1." + KubernetesMinor + ".0-berth",
		Platform: "linux/amd64", Compiler: "gc",
	})
	return nil
}

func (s *Server) coreVersions(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, metav1.APIVersions{
		TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
		Versions: []string{"v1"},
	})
	return nil
}

func apiGroup(gv resourceInfo) metav1.APIGroup {
	v := metav1.GroupVersionForDiscovery{GroupVersion: gv.groupVersion(), Version: gv.Version}
	return metav1.APIGroup{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"},
		Name:     gv.Group, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v,
	}
}

func (s *Server) groupList(w http.ResponseWriter, _ *http.Request) error {
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, gv := range groupVersions() {
		list.Groups = append(list.Groups, apiGroup(gv))
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) group(gv resourceInfo) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, _ *http.Request) error {
		writeJSON(w, http.StatusOK, apiGroup(gv))
		return nil
	}
}

func (s *Server) resourceList(group, ver string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, _ *http.Request) error {
		gv := resourceInfo{Group: group, Version: ver}
		list := metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: gv.groupVersion(),
		}
		for _, r := range resourcesOf(group, ver) {
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: r.Resource, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind,
				Verbs: r.Verbs, ShortNames: r.ShortNames,
			})
			subs := make([]string, 0, len(r.Subresources))
			for sub := range r.Subresources {
				subs = append(subs, sub)
			}
			sort.Strings(subs)
			for _, sub := range subs {
				list.APIResources = append(list.APIResources, metav1.APIResource{
					Name: r.Resource + "/" + sub, Namespaced: r.Namespaced, Kind: r.Kind, Verbs: r.Subresources[sub],
				})
			}
		}
		writeJSON(w, http.StatusOK, list)
		return nil
	}
}

// openAPIv2 serves an OpenAPI document without definitions: kubectl's
// create -f, apply and edit fetch it first and fail on a 404, and with no
// schema for a kind they skip client-side validation (the server
// validates). A schema must be complete or absent: a partial one makes
// kubectl refuse valid objects.
func (s *Server) openAPIv2(w http.ResponseWriter, r *http.Request) error {
	doc := &openapi_v2.Document{
		Swagger: "2.0",
		Info:    &openapi_v2.Info{Title: "Berth", Version: "v1." + KubernetesMinor},
	}
	if strings.Contains(r.Header.Get("Accept"), "protobuf") {
		b, err := proto.Marshal(doc)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
		_, _ = w.Write(b)
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"swagger": "2.0", "info": map[string]string{"title": "Berth", "version": "v1." + KubernetesMinor}, "paths": map[string]any{}})
	return nil
}
