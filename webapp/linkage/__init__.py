"""Record linkage: normalising, matching and grouping person records of envelopes."""
