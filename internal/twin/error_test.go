package twin

import (
	"strconv"
	"testing"
)

func TestKinds(t *testing.T) {
	kinds := Kinds()
	if len(kinds) != int(kindEnd)-1 || len(kindNames) != int(kindEnd) {
		t.Fatalf("%d kinds and %d names for %d kinds", len(kinds), len(kindNames)-1, kindEnd-1)
	}
	seen := map[string]Kind{}
	for i, k := range kinds {
		if k != Kind(i+1) {
			t.Errorf("Kinds()[%d] = %d", i, k)
		}
		name := k.String()
		if kindNames[k] == "" {
			t.Errorf("kind %d has no name", k)
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("kinds %d and %d are both named %s", prev, k, name)
		}
		seen[name] = k
	}
	for _, k := range []Kind{0, kindEnd, -1} {
		if got, want := k.String(), "Kind("+strconv.Itoa(int(k))+")"; got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestErrorString(t *testing.T) {
	if got, want := JSONPatchInvalid("Bad.").Error(), "JSONPatchInvalid: Bad."+patchHelp; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
