"""Runs on this machine: detached runs (runs), their queue, supervisor and processes, the log, and
foreground runs (`workbench train`). Never imports `workbench.launch.remote`."""
