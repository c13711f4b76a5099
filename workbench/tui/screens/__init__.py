"""Screens of the workbench app: Runs, Run, New run, Compare, and the modals."""
