"""Source against target: row counts and per-chunk fingerprints of what a load wrote."""
