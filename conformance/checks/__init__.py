"""The checks: the table of checks, the differential checks, the call contract, the oracle-free identities, findings,
and what a suite test does with one example."""
