"""The networks and their int8 form: our ImageNet classifier, YAMNet (its TFLite peer and its Keras port), the
quantisation-aware twin, and the conversion to TFLite.

May import data/ and recipe/ (and edge's model runtime); never fit/, calibrate/ or evaluate/."""
