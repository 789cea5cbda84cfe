package quota

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/berth-registry/berth/internal/store"
)

func TestDecideTakesTheTightestBound(t *testing.T) {
	objs := []store.Object{
		{ObjectKey: store.ObjectKey{Resource: ResourceQuotas, Name: "loose"},
			Body: []byte(`{"metadata":{"name":"loose"},"spec":{"hard":{"openshift.io/imagestreams":"10","berth.io/storage":"1Gi"}}}`)},
		{ObjectKey: store.ObjectKey{Resource: ResourceQuotas, Name: "tight"},
			Body: []byte(`{"metadata":{"name":"tight"},"spec":{"hard":{"berth.io/storage":"5Mi"}}}`)},
		{ObjectKey: store.ObjectKey{Resource: LimitRanges, Name: "images"},
			Body: []byte(`{"metadata":{"name":"images"},"spec":{"limits":[{"type":"openshift.io/Image","max":{"storage":"100Mi"}},{"type":"openshift.io/Image","max":{"storage":"50Mi"}}]}}`)},
	}
	l, err := Decide(objs)
	if err != nil {
		t.Fatal(err)
	}
	if l.ImageStreams.Max != 10 || l.ImageStreams.By != "quota: loose" {
		t.Errorf("streams: %+v", l.ImageStreams)
	}
	if l.Storage.Max != 5<<20 || l.Storage.By != "quota: tight" || l.Storage.Resource != "berth.io/storage" {
		t.Errorf("storage: %+v", l.Storage)
	}
	if l.ImageSize.Max != 50<<20 || !strings.Contains(l.ImageSize.By, "limit range images") {
		t.Errorf("image size: %+v", l.ImageSize)
	}
	if _, err := Decide([]store.Object{{ObjectKey: store.ObjectKey{Resource: ResourceQuotas, Name: "bad"}, Body: []byte(`{`)}}); err == nil {
		t.Error("an undecodable quota decided")
	}
}

func TestStatusShowsUsedForEachBound(t *testing.T) {
	q := &corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
		ImageStreams: resource.MustParse("3"), Storage: resource.MustParse("1Gi")}}}
	Status(q, store.Usage{ImageStreams: 2, StorageBytes: 3 << 20})
	if got := q.Status.Used[ImageStreams]; got.Value() != 2 {
		t.Errorf("used streams %s", got.String())
	}
	if got := q.Status.Used[Storage]; got.String() != "3Mi" {
		t.Errorf("used storage %s", got.String())
	}
	if got := q.Status.Hard[Storage]; got.String() != "1Gi" {
		t.Errorf("hard storage %s", got.String())
	}
}

func TestFormatBytesIsExact(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1000: "1000", 1024: "1Ki", 5 << 20: "5Mi", 5<<20 + 1: "5242881", 3 << 40: "3Ti"} {
		if got := store.FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %s, want %s", n, got, want)
		}
	}
}
