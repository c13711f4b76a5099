"""The tabs of the Run screen: each pane takes a run id and reads the registry in its own workers."""
