"""Dialogue data for supervised fine-tuning: the `build_dialogues` stage and its sources.

- `conversation`: the conversation contract (roles, order, content) and its stable hash;
- `datasets`: instruction/chat datasets on disk (parquet, JSONL) read lazily, filtered with counts;
- `speech`: direct speech of prose (dashes, quotation marks) with the author's remarks removed;
- `windows`: runs of utterances (subtitle lines, speech paragraphs) cut into alternating turns;
- `build`: the stage function; `report`: its report; `sample_data`: the embedded sample's text.
"""
