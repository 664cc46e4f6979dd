"""A model bundle and how it runs: the bundle format and signatures, the self-test, the TFLite runtime, the classifier.

May import the core only."""
