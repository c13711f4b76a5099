"""Runs on SSH hosts: the host list and connections (hosts; asyncssh loads only to connect), runs
there (runs), the pull that brings their records home (pull), and the host side of every request
(agent, `python -m workbench.launch.remote.agent`)."""
