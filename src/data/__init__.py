"""Data stages: fetching raw corpora and cleaning them into documents."""
