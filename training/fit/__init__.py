"""Stage 2, training: batches of augmented windows, the YAMNet teacher, the ImageNet recipe's phases, and
``model.arch: yamnet`` with its cache of frozen-block activations.

May import model/, data/ and recipe/; never calibrate/ or evaluate/."""
