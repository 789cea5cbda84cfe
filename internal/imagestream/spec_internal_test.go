package imagestream

import (
	"context"
	"testing"

	imagev1 "github.com/berth-registry/berth/internal/api/image/v1"
)

// The imports a stream's DockerImage spec tags start apply the cluster's
// allowedRegistriesForImport for callers who may not create images, as
// an ImageStreamImport does: a spec tag is no way around it.
func TestSpecTagImportsCheckTheImportList(t *testing.T) {
	s := &Service{importer: &Importer{}}
	is := &imagev1.ImageStream{Spec: imagev1.ImageStreamSpec{Tags: []imagev1.TagReference{{Name: "t",
		From: &imagev1.ObjectReference{Kind: imagev1.KindDockerImage, Name: "registry.example.com/x:t"}}}}}
	is.Name = "s"
	for _, check := range []bool{true, false} {
		sources, err := s.checkSpec(context.Background(), "p", is, WriteOptions{CheckImportList: check})
		if err != nil {
			t.Fatal(err)
		}
		if len(sources) != 1 || sources[0].Import.CheckImportList != check {
			t.Fatalf("CheckImportList %v: sources %+v", check, sources)
		}
	}
}
