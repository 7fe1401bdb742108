package approval

import "testing"

// The same call, encoded again (as a run resumed after a restart does),
// is the same approval; another call is another one.
func TestIDIsOnTheParsedArguments(t *testing.T) {
	a := ID("ag", "1.0", "exec", `{"command": "echo",  "args": ["hi", 1.50]}`)
	if b := ID("ag", "1.0", "exec", `{"args":["hi",1.50],"command":"echo"}`); a != b {
		t.Errorf("re-encoded arguments give another id: %s, %s", a, b)
	}
	for _, other := range []string{`{"command":"echo","args":["ho",1.50]}`, `{"command":"echo","args":["hi",1.5]}`, `not json`} {
		if ID("ag", "1.0", "exec", other) == a {
			t.Errorf("%s has the same id", other)
		}
	}
	if x, y := ID("ag", "1.0", "exec", "not json"), ID("ag", "1.0", "exec", "not json"); x != y {
		t.Error("text that is not JSON is not stable")
	}
}
