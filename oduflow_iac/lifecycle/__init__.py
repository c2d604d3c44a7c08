"""Day-two jobs on an environment, one module per job kind (upgrade, refresh, neutralise, backup,
restore): each builds the exact commands, scripts and SQL of its job as pure functions; the
components and the CLI only wire them to containers and runs."""
