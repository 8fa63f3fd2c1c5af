package sqlite_test

import (
	"github.com/ferryhealth/ferry/adapters/httpapi/accesstest"
	"testing"

	"github.com/ferryhealth/ferry/engine/storetest"
)

func TestPeople(t *testing.T) {
	storetest.RunPeople(t, func(t *testing.T) storetest.PeopleStore { return openTestStore(t, testPath(t)) })
}

func BenchmarkAppendAudit(b *testing.B) {
	storetest.BenchAppendAudit(b, func(b *testing.B) storetest.PeopleStore { return openTestStore(b, testPath(b)) })
}

func BenchmarkAppendAuditParallel(b *testing.B) {
	storetest.BenchAppendAuditParallel(b, func(b *testing.B) storetest.PeopleStore { return openTestStore(b, testPath(b)) })
}

func TestAccessMatrix(t *testing.T) {
	accesstest.RunMatrix(t, openTestStore(t, testPath(t)))
}

func TestPatientAccess(t *testing.T) {
	storetest.RunPatientAccess(t, func(t *testing.T) storetest.PatientAccessStore { return openTestStore(t, testPath(t)) })
}

func BenchmarkPhysicianReads(b *testing.B) {
	storetest.BenchPhysicianReads(b, func(b *testing.B) storetest.PhysicianBenchStore { return openTestStore(b, testPath(b)) })
}

func TestAuditedChanges(t *testing.T) {
	storetest.RunAuditedChanges(t, func(t *testing.T) storetest.AuditedChangeStore { return openTestStore(t, testPath(t)) })
}
