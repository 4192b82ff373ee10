"""Results: one row, the JSON-lines records, reproductions, known failures."""
