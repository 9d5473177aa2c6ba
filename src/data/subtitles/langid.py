"""Language of a cleaned subtitle file: script shares first, then short stopword lists.

Simple on purpose: subtitles are many short common words, so a few dozen of the most frequent words per
language separate them well. Within a script only words that no other language of that script lists
count, and Cyrillic also weighs the letters one language has and its neighbour lacks (Ukrainian
і ї є ґ against Russian ы э ъ ё).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from src.config.sections.clean_subs import SubsLangIdConfig
from src.data.subtitles.charcount import CharClass, bmp_points

_STOPWORDS: dict[str, dict[str, str]] = {
    "cyrillic": {
        "ru": "и в не на что я с он как а то это все она так его но да ты к у же вы за бы по только ее "
              "мне было вот от меня еще нет из ему теперь когда даже ну ли если уже или быть был "
              "него до вас опять вам ведь там потом себя ничего ей может они тут где есть надо мы "
              "тебя их чем была сам без чего тоже себе будет тогда кто этот того потому этого какой "
              "здесь этом один мой чтобы сейчас были куда зачем всех можно хорошо тебе почему очень",
        "uk": "і й в не на що я з він як а то це все вона так його але ти до у же ви за б по тільки "
              "її мені було ось від мене ще ні йому тепер коли навіть ну чи якщо вже або бути був "
              "нього вас знову вам адже там потім себе нічого їй може вони тут де є треба ми тебе "
              "їх ніж була сам без чого теж собі буде тоді хто цей того тому цього який тут цьому "
              "один мій щоб зараз були куди навіщо всіх можна добре тобі чому дуже",
        "be": "і ў не на што я з ён як а гэта усё яна так яго але ты да у ж вы за па толькі мне "
              "было вось ад мяне яшчэ няма калі нават ці ужо або быць быў вам там потым сябе нічога "
              "можа яны тут дзе ёсць трэба мы цябе іх чым была сам без таксама будзе тады хто",
        "bg": "и в не на че аз с той как а то това всичко тя така него но да ти към у вие за би по "
              "само нея ми беше ето от мен още няма из му сега когато дори ли ако вече или съм бил "
              "до вас там после себе си нищо може те тук къде има трябва ние теб ги е са",
        "sr": "и у не на што ја са он како а то ово све она тако његов али да ти к већ ви за би по "
              "само њу ми било ево од мене још нема из му сада када чак ли ако или бити био до вас "
              "там после себе ништа може они ту где има треба ми тебе их је су се",
    },
    "latin": {
        "en": "the and to of a i you it in that is was he for on are with as his they be at one have "
              "this from or had by not but what all were we when your can said there an which she do "
              "how their if will up about out them then so her would make like him into has look "
              "me my no just know don't i'm it's yeah okay get go",
        "fr": "le la les de des du un une et est pas je tu il elle nous vous ils elles que qui ne se "
              "ce cette dans pour sur avec mais ou où au aux son sa ses mon ma mes ton ta oui non "
              "c'est j'ai suis êtes était très bien tout rien quoi moi toi lui",
        "de": "der die das und ist nicht ich du er sie es wir ihr ein eine einen zu mit auf für den "
              "dem von sich auch so wie aber was wenn noch nur schon hier mein dein ja nein bin bist "
              "sind war doch gut mal jetzt",
        "es": "el la los las de del y que en un una es no se lo por con para su sus al más pero yo "
              "tú usted él ella nosotros como muy sí qué está estoy bien aquí ahora todo nada eso "
              "esto mi te me hay fue",
        "it": "il lo la gli le di del della e che non un una è per con sono mi ti ci si ma come io "
              "tu lui lei noi voi cosa questo questa qui sì bene molto tutto niente perché sei ho "
              "hai ha anche",
        "pt": "o a os as de do da dos das e que não um uma é para com por em no na eu você ele ela "
              "nós se me te mas como isso isto aqui sim bem muito tudo nada está estou foi são tem",
        "nl": "de het een en van ik je jij hij zij wij niet is dat die in op te met voor maar als "
              "wat ook zijn naar er nog wel mijn dit ja nee hier goed al heb",
        "pl": "i w nie na że to jest się z do co jak ale tak ja ty on ona my wy jestem jesteś był "
              "była czy już tylko mnie mi go jej tu tam dobrze teraz wszystko nic",
        "hr": "i u je da se ne na to za što sa od kako ali ja ti on ona mi vi su sam si smo ste bio "
              "bila ovo ono tako samo još sve nije ću ćeš će dobro ovdje sada nešto",
    },
}
_MARKERS: dict[str, str] = {"ru": "ыэъё", "uk": "іїєґ", "be": "ўі", "sr": "ђјљњћџ", "bg": "ъ"}
# Marker letters are frequent (a few per hundred letters); half a stopword each keeps both in scale.
_MARKER_WEIGHT = 0.5
# Runs of letters per script (counting runs, not single characters, keeps findall cheap).
_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cyrillic", re.compile(r"[\u0400-\u04ff]+")),
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]+")),
    ("zh", re.compile(r"[\u4e00-\u9fff]+")),
    ("ja", re.compile(r"[\u3040-\u30ff]+")),
    ("ko", re.compile(r"[\uac00-\ud7af]+")),
    ("ar", re.compile(r"[\u0600-\u06ff]+")),
    ("he", re.compile(r"[\u0590-\u05ff]+")),
    ("el", re.compile(r"[\u0370-\u03ff]+")),
)
_SCRIPT_CLASSES = tuple((name, CharClass(rx)) for name, rx in _SCRIPTS)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
SCRIPT_OF_LANGUAGE = {lang: script for script, langs in _STOPWORDS.items() for lang in langs}


def _distinct_stopwords() -> dict[str, dict[str, frozenset[str]]]:
    """Per script, each language's words that no other language of the script lists."""
    out: dict[str, dict[str, frozenset[str]]] = {}
    for script, langs in _STOPWORDS.items():
        sets = {lang: set(words.split()) for lang, words in langs.items()}
        out[script] = {
            lang: frozenset(words - set().union(*(s for o, s in sets.items() if o != lang)))
            for lang, words in sets.items()
        }
    return out


_DISTINCT = _distinct_stopwords()


@dataclass
class LangGuess:
    language: str  # ISO 639-1 code, or "unknown"
    share: float  # the winner's share of the evidence (1.0 for a script with one language)
    script: str
    scores: dict[str, float] = field(default_factory=dict)


def script_counts(text: str) -> dict[str, int]:
    points = bmp_points(text)
    return {name: letters.count(text, points) for name, letters in _SCRIPT_CLASSES}


def detect_language(text: str, cfg: SubsLangIdConfig) -> LangGuess:
    """Guess the language of `text` (the first cfg.sample_chars are enough)."""
    sample = text[: cfg.sample_chars]
    scripts = script_counts(sample)
    script, letters = max(scripts.items(), key=lambda kv: kv[1])
    if letters < cfg.min_letters:
        return LangGuess("unknown", 0.0, script if letters else "none")
    if script not in _DISTINCT:
        return LangGuess(script, 1.0, script)
    lowered = sample.lower()
    words = Counter(w.replace("’", "'") for w in _WORD.findall(lowered))
    scores: dict[str, float] = {}
    for lang, vocab in _DISTINCT[script].items():
        score = float(sum(words.get(w, 0) for w in vocab))
        marks = _MARKERS.get(lang, "")
        if marks and script == "cyrillic":
            score += _MARKER_WEIGHT * sum(lowered.count(ch) for ch in marks)
        scores[lang] = score
    total = sum(scores.values())
    best = max(scores, key=lambda k: scores[k])
    share = scores[best] / total if total else 0.0
    if share < cfg.min_share:
        return LangGuess("unknown", share, script, scores)
    return LangGuess(best, share, script, scores)
