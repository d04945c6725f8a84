"""Records into a report: the tidy frame (frame), its tables (tables, fastest, compare), plots,
the documents (report/, document) and writing them to a directory (render, outdir)."""
