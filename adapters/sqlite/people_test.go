package sqlite_test

import (
	"testing"

	"github.com/ferryhealth/ferry/engine/storetest"
)

func TestPeople(t *testing.T) {
	storetest.RunPeople(t, func(t *testing.T) storetest.PeopleStore { return openTestStore(t, testPath(t)) })
}
