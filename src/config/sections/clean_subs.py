"""`clean_subs`: parse raw SRT files, strip markup and fluff, shape utterances, dedup, filter languages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SubsDecodeConfig:
    # Single-byte code pages tried (by charset-normalizer) when the bytes are neither UTF-8 nor UTF-16.
    candidate_encodings: list[str] = field(
        default_factory=lambda: ["cp1251", "koi8_r", "cp866", "mac_cyrillic", "cp1250", "cp1252",
                                 "iso8859_2", "iso8859_15"]
    )
    # Cyrillic code pages our own sanity check chooses among when most letters are high bytes.
    cyrillic_encodings: list[str] = field(default_factory=lambda: ["cp1251", "koi8_r", "cp866", "mac_cyrillic"])
    # Share of bytes >= 0x80 among letter-like bytes above which a text is taken to be Cyrillic.
    cyrillic_high_byte_ratio: float = 0.3
    # Share of NUL bytes at odd (LE) / even (BE) offsets that marks BOM-less UTF-16.
    utf16_nul_ratio: float = 0.3
    # Decoded text with more control characters than this share is binary, not a subtitle.
    max_control_ratio: float = 0.02
    # How many leading bytes the byte statistics look at (speed on multi-MB files).
    sample_bytes: int = 65536


@dataclass
class SubsParseConfig:
    # Stable sort of cues by start time (out-of-order cues are counted as a warning either way).
    sort_by_time: bool = True
    # Cues shown for 0 ms are invisible (capability testers hide data in them).
    drop_zero_duration: bool = True


@dataclass
class SubsFluffRules:
    opensubtitles_ad: bool = True
    site_ad: bool = True
    translator_credit: bool = True  # "Subtitles by", "== sync, corrected by X ==", "Synchronisation par"
    captioning_credit: bool = True  # "Captioning sponsored by CBS ...", "Captioned by ..."
    title_card: bool = True  # an episode's title card: "<title>\nOriginal Air Date on <date>"
    url: bool = True
    sound_description: bool = True  # [music], [AUDIENCE LAUGHS]
    parenthetical: bool = True  # ( wind whistling ): subtitles almost never use parentheses for speech
    music: bool = True  # ♪ ... ♪ lyrics, lines opened or closed by a note sign, "Song" playing
    # Captions without note signs mark sung lines "* Men, men, manly men *": drop those too.
    music_star_marker: bool = True
    lone_symbol: bool = True  # lines with no letter or digit left (*, -, ...)
    speaker_label: bool = True  # JERRY: / ДЖОН:
    caps_caption: bool = True  # ALL-CAPS on-screen captions inside a mixed-case file
    caps_caption_min_letters: int = 8
    foreign_script_line: bool = True  # e.g. Chinese lines of a bilingual zh/en file kept as en
    # A line is foreign when under this share of its letters is in the file's script (names in
    # Latin inside Russian lines stay; a Chinese line of a zh/en file goes).
    foreign_script_max_ratio: float = 0.2
    foreign_script_min_letters: int = 3
    # Sentence-case files written in ALL CAPS (their share of upper-case letters at least all_caps_ratio).
    case_normalize_all_caps: bool = True
    all_caps_ratio: float = 0.85
    # Site names whose mention makes a cue an ad (matched case-insensitively as words).
    ad_sites: list[str] = field(
        default_factory=lambda: [
            "allsubs", "tvsubtitles", "titlovi", "addic7ed", "podnapisi", "subscene",
            "opensubtitles", "osdb", "notabenoid", "hurtom", "9movie", "yify", "yts", "subsmax",
            "napiprojekt", "subtitulos", "sub-titles",
        ]
    )
    # OpenSubtitles' own injected cues, as phrases (case-insensitive).
    opensubtitles_phrases: list[str] = field(
        default_factory=lambda: [
            "advertise your product or brand here", "support us and become vip member",
            "is deprecated, please", "implement rest api", "remove all ads from", "become vip member",
            "help other users to choose the best subtitles", "please rate this subtitle",
        ]
    )


@dataclass
class SubsLinesConfig:
    split_speaker_dashes: bool = True
    merge_continuations: bool = True
    # A cue ending in , ; : - ... is continued by the next cue within this gap whatever its case.
    merge_short_gap_ms: int = 1000
    # A cue without final punctuation is continued by a next cue starting lower-case within this gap.
    merge_max_gap_ms: int = 4000
    max_merged_chars: int = 400
    # A gap longer than this between utterances starts a new scene.
    scene_gap_ms: int = 8000
    drop_repeated_lines: bool = True
    # Read " | " (cues joined by converters) as a line break.
    pipe_is_line_break: bool = True


@dataclass
class SubsDedupConfig:
    exact: bool = True
    near: bool = True
    shingle_words: int = 4
    # Bottom-k sketch: the k smallest shingle hashes of a file.
    sketch_size: int = 256
    # Files sharing fewer sketch hashes than this are not compared at all (a cheap pre-filter).
    min_shared_hashes: int = 8
    threshold: float = 0.7  # estimated Jaccard similarity at or above which a file is a duplicate
    seed: int = 20240


@dataclass
class SubsLangIdConfig:
    keep_languages: list[str] = field(default_factory=lambda: ["ru", "en"])
    # Only the first sample_chars of a cleaned file are looked at.
    sample_chars: int = 6000
    # Fewer letters than this: language "unknown".
    min_letters: int = 20
    # Best language's share of stopword hits below this: "unknown".
    min_share: float = 0.4


@dataclass
class CleanSubsConfig:
    input_dir: str = "data/raw/opensubs"
    output: str = "data/clean/subtitles.parquet"
    report_dir: str = "data/reports/clean_subs"
    # Process pool size for parsing and cleaning (1 = in-process); files per task.
    workers: int = 2
    chunksize: int = 4
    # Chunks submitted to the pool ahead of the writer, per worker: bounds the finished results
    # waiting in memory while keeping every worker busy.
    pending_chunks_per_worker: int = 4
    # Lines per row group of the spool (pass 1) and of the output: the lines held in memory at once.
    spool_rows_per_group: int = 32768
    # Apply src.text.normalize.normalize_text (config section `normalize`) to each utterance.
    normalize_text: bool = True
    # Overrides `normalize.repair_mojibake` here: our decoder already chose the code page from the
    # bytes, and the normalizer's re-guess from text is two thirds of its time. Switch on for corpora
    # with double-encoded (UTF-8 read as cp1251 and saved again) files.
    repair_mojibake: bool = False
    # Per-file warnings listed in report.md (all of them are in report.json).
    report_max_warnings: int = 5
    decode: SubsDecodeConfig = field(default_factory=SubsDecodeConfig)
    parse: SubsParseConfig = field(default_factory=SubsParseConfig)
    rules: SubsFluffRules = field(default_factory=SubsFluffRules)
    lines: SubsLinesConfig = field(default_factory=SubsLinesConfig)
    dedup: SubsDedupConfig = field(default_factory=SubsDedupConfig)
    langid: SubsLangIdConfig = field(default_factory=SubsLangIdConfig)
