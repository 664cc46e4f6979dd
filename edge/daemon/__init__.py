"""The running daemon: config, which model starts (startup), the model slot (which model runs, switching,
rollback), runtime controls (set commands applied and kept across restarts), the service, replay.

May import every room below it (audio, model, detect, publish, update); never cli/."""
