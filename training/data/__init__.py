"""Stage 1, the audio: labelled clips and splits, background, the feature cache, augmentation on dB frames,
``prepared.json``, and ``auricle-train inspect``.

May import recipe/ and edge's front end; never a model, never Keras."""
