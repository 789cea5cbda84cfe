package settings

import (
	"crypto/tls"
	"testing"
)

func TestRouteFor(t *testing.T) {
	cert := &tls.Certificate{}
	s := &Settings{Routes: []Route{
		{Name: "default-route", Host: "default-route-openshift-image-registry.apps.example"},
		{Name: "public", Host: "myregistry.mycorp.organization", Certificate: cert},
	}}
	for name, want := range map[string]string{
		"myregistry.mycorp.organization":                      "public",
		"MyRegistry.MyCorp.Organization":                      "public",
		"myregistry.mycorp.organization.":                     "public",
		"default-route-openshift-image-registry.apps.example": "default-route",
		"mycorp.organization":                                 "",
		"":                                                    "",
		"localhost":                                           "",
	} {
		got := s.RouteFor(name)
		switch {
		case want == "" && got != nil:
			t.Errorf("RouteFor(%q) = %s, want none", name, got.Name)
		case want != "" && (got == nil || got.Name != want):
			t.Errorf("RouteFor(%q) = %v, want %s", name, got, want)
		}
	}
	if s.RouteFor("myregistry.mycorp.organization").Certificate != cert {
		t.Error("RouteFor returned a copy without the certificate")
	}
	if Defaults().RouteFor("localhost") != nil {
		t.Error("the defaults have a route")
	}
}
