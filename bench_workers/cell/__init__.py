"""One cell measured: the model and its inputs (models, inputs, generation), the timed loop and
its statistics (measure, timers, stop_rule, stats), what the numbers are worth (flops,
roofline, accuracy, transfers), and the embedded run of every cell in this process."""
