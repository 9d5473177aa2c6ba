"""Typed schemas for each config section: one module per section, named after it.

Each dataclass is the single statement of a section's keys, types and defaults; the YAML in
`conf/<section>/` picks values, and `src.config.load_config` rejects unknown keys and wrong types.
"""
