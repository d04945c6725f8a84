"""Everything the operator runs: the CLI, submitting and watching runs, collecting records,
rendering reports. Imports no torch (a laptop controller)."""
