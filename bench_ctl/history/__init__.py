"""The results history: every finished run in a database (database), and a run against its
past (regression)."""
