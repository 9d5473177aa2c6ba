"""Preference data for tuning after SFT: the kto_pairs stage (kto_pairs.py)."""
