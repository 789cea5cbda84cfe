package apiserver

import (
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Tables for the lists the handlers of issue 3 serve (projects, users,
// groups, tokens, service accounts, role bindings): the columns the
// reference's CLI prints for them, so that `kubectl get` and `berth get`
// show more than a name.

// tableMeta is m as Kubernetes metadata, for a Table row.
func (m ObjectMeta) tableMeta() metav1.ObjectMeta {
	out := metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Annotations: m.Annotations}
	if t, err := time.Parse(time.RFC3339, m.CreationTimestamp); err == nil {
		out.CreationTimestamp = metav1.NewTime(t)
	}
	return out
}

// column is a Table column; priority 1 columns show with -o wide only.
func column(name, description string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: "string", Description: description, Priority: priority}
}

// writeList answers a list request with list, or with a Table of columns
// and one row per item when the client asks for one.
func writeList[T any](w http.ResponseWriter, r *http.Request, list List[T], columns []metav1.TableColumnDefinition, row func(T) (ObjectMeta, []any)) error {
	if !wantsTable(r) {
		return writeJSONOrYAML(w, r, http.StatusOK, list)
	}
	t := newTable(append([]metav1.TableColumnDefinition{columnName}, columns...), "", "")
	include := r.URL.Query().Get("includeObject")
	for _, item := range list.Items {
		meta, cells := row(item)
		cells = append([]any{meta.Name}, cells...)
		switch include {
		case "None":
			t.Rows = append(t.Rows, metav1.TableRow{Cells: cells})
		case "Object":
			t.Rows = append(t.Rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Raw: mustJSON(item)}})
		default:
			t.Rows = append(t.Rows, metaRow(meta.tableMeta(), cells...))
		}
	}
	return writeJSONOrYAML(w, r, http.StatusOK, t)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

var (
	projectColumns = []metav1.TableColumnDefinition{
		column("Display Name", "The project's display name.", 0),
		column("Status", "The project's phase.", 0),
	}
	userColumns = []metav1.TableColumnDefinition{
		column("Groups", "The groups the user is in.", 0),
	}
	tokenColumns = []metav1.TableColumnDefinition{
		column("Current", "* marks the token this request carries.", 0),
		column("Description", "What the token was issued for.", 0),
		column("Created", "When the token was issued.", 0),
		column("Expires", "When the token stops working.", 0),
	}
)

func projectRow(p Project) (ObjectMeta, []any) {
	return p.Metadata, []any{p.Metadata.Annotations["openshift.io/display-name"], p.Status.Phase}
}

func userRow(u User) (ObjectMeta, []any) {
	return u.Metadata, []any{orNone(strings.Join(u.Groups, ", "))}
}

func tokenRow(t UserOAuthAccessToken) (ObjectMeta, []any) {
	mark := ""
	if t.Metadata.Annotations["berth.io/current"] == "true" {
		mark = "*"
	}
	a := t.Metadata.Annotations
	return t.Metadata, []any{mark, orNone(a["berth.io/description"]), orNone(t.Metadata.CreationTimestamp), orNone(a["berth.io/expires"])}
}
