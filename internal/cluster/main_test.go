package cluster

import (
	"testing"

	"github.com/oxios/oxios/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
