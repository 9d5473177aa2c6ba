"""The root config: one typed section per concern, composed by Hydra from `conf/`."""

from __future__ import annotations

from dataclasses import dataclass, field

from src.config.sections.build_dialogues import BuildDialoguesConfig
from src.config.sections.clean_librus import CleanLibrusConfig
from src.config.sections.clean_subs import CleanSubsConfig
from src.config.sections.eval import EvalConfig
from src.config.sections.generation import GenerationConfig
from src.config.sections.kto import KTOConfig
from src.config.sections.kto_pairs import KtoPairsConfig
from src.config.sections.markov import MarkovConfig
from src.config.sections.model import ModelConfig
from src.config.sections.normalize import NormalizeConfig
from src.config.sections.pretrain import PretrainConfig
from src.config.sections.reranker import RerankerConfig
from src.config.sections.reranker_data import RerankerDataConfig
from src.config.sections.scrape_librus import ScrapeLibrusConfig
from src.config.sections.scrape_opensubs import ScrapeOpensubsConfig
from src.config.sections.serve import ServeConfig
from src.config.sections.sft import SFTConfig
from src.config.sections.tokenize import TokenizeConfig
from src.config.sections.tokenizer import TokenizerConfig
from src.config.sections.tracking import TrackingConfig
from src.config.sections.trainer import TrainerConfig


@dataclass
class RootConfig:
    seed: int = 1337
    # the stage `python -m src.train` runs: pretrain | sft | kto
    task: str = "pretrain"
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    scrape_librus: ScrapeLibrusConfig = field(default_factory=ScrapeLibrusConfig)
    clean_librus: CleanLibrusConfig = field(default_factory=CleanLibrusConfig)
    scrape_opensubs: ScrapeOpensubsConfig = field(default_factory=ScrapeOpensubsConfig)
    clean_subs: CleanSubsConfig = field(default_factory=CleanSubsConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    build_dialogues: BuildDialoguesConfig = field(default_factory=BuildDialoguesConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    kto: KTOConfig = field(default_factory=KTOConfig)
    kto_pairs: KtoPairsConfig = field(default_factory=KtoPairsConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    reranker_data: RerankerDataConfig = field(default_factory=RerankerDataConfig)
    reranker: RerankerConfig = field(default_factory=RerankerConfig)
    markov: MarkovConfig = field(default_factory=MarkovConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
