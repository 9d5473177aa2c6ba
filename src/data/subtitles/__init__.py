"""Subtitle cleaning: decode any SRT, parse it tolerantly, strip markup and fluff, shape utterances,
detect language and duplicates. The stage is `clean.clean_subs`; the probe is `python -m src.data.subtitles`.
"""
