"""The running daemon: config, the model slot (which model runs, switching, probation), runtime changes kept
across restarts (controls), the service, replay.

May import every room below it (audio, model, detect, publish, update); never cli/."""
