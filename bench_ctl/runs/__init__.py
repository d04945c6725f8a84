"""Submitting and watching runs: the spec to tasks on the broker (submit), the store's records
(store), waiting and gathering them (collect, progress), and the embedded run in this process."""
