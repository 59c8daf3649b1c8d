"""Planning a table: the chunk model (``chunks``), the planner over one distribution query (``planning``) and
incremental windows over a watermark (``incremental``)."""
