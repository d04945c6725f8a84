"""The commands, each a few lines over the library: parse, call, print (bench_ctl/options.py
holds the Typer app and the shared flags)."""
