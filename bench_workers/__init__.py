"""Everything that runs next to the model. torch is imported lazily, inside the task path."""
