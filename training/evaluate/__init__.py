"""Stage 4, the exported models measured through the device code: clip scores, the bundle's manifest, the report.

May import model/, data/ and recipe/; never fit/ or calibrate/."""
