package postgres

// Statements whose plans postgres_test checks.
var (
	ResourceByKeysSQL = resourceByKeysSQL
	ClaimPendingSQL   = claimPendingSQL
)
