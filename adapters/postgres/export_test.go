package postgres

// Statements whose plans postgres_test checks.
var (
	ResourceByKeysSQL      = resourceByKeysSQL
	ClaimPendingSQL        = claimPendingSQL
	DueDeliveriesSQL       = dueDeliveriesSQL
	PostponeDestinationSQL = postponeDestinationSQL
)

// Reads of engine.InstanceStore whose plans postgres_test checks.
var (
	StudySeriesSQL     = shared.StudySeriesSQL()
	SeriesInstancesSQL = shared.SeriesInstancesSQL()
)
