"""Desktop training (``auricle-train``): labelled audio in, an int8 bundle and an honest report out.

Rooms on floors, each importing only below it: cli, crossval, pipeline; fit/ calibrate/ evaluate/; model/; data/;
recipe/ (pyproject's contract).  May import edge freely; never bench or tests."""
