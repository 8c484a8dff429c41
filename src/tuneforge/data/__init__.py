"""Data pipeline: read → format → validate → template/tokenize → cache → collate."""
