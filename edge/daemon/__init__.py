"""The running daemon: config, the model slot (which model runs, switching, probation), the service, replay.

May import every room below it (audio, model, detect, publish, update); never cli/."""
