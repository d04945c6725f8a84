"""Serving under load: requests arrive (MLPerf LoadGen's Server or Offline scenario), a dynamic
batcher groups them, the model serves the batches; the highest rate within a p99 bound is
searched. All of it in the measuring process: no network hop is measured."""
