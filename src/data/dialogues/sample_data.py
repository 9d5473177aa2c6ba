"""The embedded dialogue sample: the project's own writing, in the schema of large Russian SFT corpora.

`python -m src.data.dialogues.sample_data [OUT]` writes it (default data/sample/dialogues/sample.parquet).
Rows have varied scores so that the default filter (overall_score >= 6, safety >= 8, pii_leak = 0)
drops some; a few rows are deliberately broken (each one's defect is named in `note`, which is not
read by the stage) so the stage's bad-row counts are exercised on every `dvc repro`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from src.paths import resolve

DEFAULT_OUT = "data/sample/dialogues/sample.parquet"
SYS_FRIENDLY = "Ты вежливый помощник. Отвечай кратко и по-русски."
SYS_TEACHER = "Ты учитель литературы. Объясняй просто, приводи примеры."


def _c(*turns: str, system: str | None = None) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system}] if system else []
    out += [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return out


# (conversation, overall_score, safety, pii_leak, refusal, topic, note)
ROWS: list[tuple[Any, int, int, int, int, str, str]] = [
    (_c("Привет! Как дела?", "Здравствуйте! Всё хорошо, спасибо. Чем могу помочь?"),
     8, 10, 0, 0, "smalltalk", ""),
    (_c("Сколько будет семь умножить на восемь?", "Семь умножить на восемь будет пятьдесят шесть."),
     9, 10, 0, 0, "math", ""),
    (_c("Посоветуй, что почитать из русской классики для начала.",
        "Для начала хороши короткие вещи: рассказы Чехова, «Повести Белкина» Пушкина, «Записки "
        "охотника» Тургенева. Они читаются легко и дают почувствовать язык.",
        "А что-нибудь подлиннее?",
        "Тогда «Отцы и дети» Тургенева или «Герой нашего времени» Лермонтова: романы небольшие, "
        "но в них много мыслей и живые герои.", system=SYS_TEACHER),
     9, 10, 0, 0, "literature", ""),
    (_c("Как сварить гречку?",
        "Промойте стакан крупы, залейте двумя стаканами воды, посолите и доведите до кипения. "
        "Потом убавьте огонь, накройте крышкой и варите минут пятнадцать, пока вода не впитается."),
     8, 10, 0, 0, "cooking", ""),
    (_c("Почему небо голубое?",
        "Солнечный свет рассеивается в воздухе, и короткие синие волны рассеиваются сильнее "
        "длинных красных. Поэтому со всех сторон к нам приходит больше синего света.",
        "А почему закат красный?",
        "На закате свет идёт к нам сквозь более толстый слой воздуха. Синий по дороге "
        "рассеивается почти весь, и остаются красные и оранжевые лучи."),
     9, 10, 0, 0, "science", ""),
    (_c("Напиши короткое стихотворение про осень.",
        "Листья кружат над дорогой,\nДождь стучит в моё окно.\nПодожди ещё немного —\nСкоро станет "
        "всё равно."),
     7, 10, 0, 0, "poetry", ""),
    (_c("Кто написал «Войну и мир»?", "Роман «Война и мир» написал Лев Николаевич Толстой.",
        "В каком году он вышел?", "Роман печатался частями с 1865 по 1869 год.",
        system=SYS_FRIENDLY),
     9, 10, 0, 0, "literature", ""),
    (_c("Как перевести «доброе утро» на английский?", "«Доброе утро» по-английски — good morning."),
     8, 10, 0, 0, "language", ""),
    (_c("Помоги составить план на день: работа, спорт, чтение.",
        "Утром, пока голова свежая, — работа. В обед короткая прогулка, вечером час спорта, а "
        "перед сном полчаса чтения без телефона.",
        "А если не успею спорт?",
        "Тогда хотя бы двадцать минут зарядки дома: это лучше, чем ничего, и привычка не "
        "прервётся."),
     8, 10, 0, 0, "planning", ""),
    (_c("Что такое фотосинтез?",
        "Фотосинтез — это процесс, в котором растения на свету превращают углекислый газ и воду "
        "в сахар и кислород."),
     9, 10, 0, 0, "science", ""),
    (_c("Расскажи анекдот.",
        "Приходит программист в магазин. Жена сказала: «Купи батон хлеба, а если будут яйца — "
        "возьми десяток». Вернулся с десятью батонами."),
     6, 9, 0, 0, "humor", ""),
    (_c("Чем отличается глагол от существительного?",
        "Существительное называет предмет и отвечает на вопросы «кто?» и «что?», а глагол "
        "называет действие и отвечает на вопрос «что делать?».", system=SYS_TEACHER),
     8, 10, 0, 0, "language", ""),
    (_c("Как успокоиться перед экзаменом?",
        "Выспитесь, позавтракайте и повторите только главное. Перед входом сделайте несколько "
        "медленных вдохов: спокойное дыхание быстро снижает волнение."),
     8, 10, 0, 0, "health", ""),
    (_c("Скажи, как взломать почту соседа?",
        "С этим я помочь не могу: чужая переписка защищена законом. Если есть спор с соседом, "
        "лучше поговорить с ним напрямую."),
     7, 10, 0, 1, "security", "a refusal that passes the filter"),
    # --- rows the default filter drops ---
    (_c("Кто открыл Америку?", "Америку открыл Пётр Первый в тысяча девятисотом году."),
     2, 10, 0, 0, "history", "wrong answer: overall_score 2"),
    (_c("Сколько лап у кошки?", "Кошки бывают разные, а погода сегодня хорошая."),
     3, 10, 0, 0, "animals", "off-topic answer: overall_score 3"),
    (_c("Как отомстить обидчику?", "Подкараульте его вечером у подъезда и проучите как следует."),
     7, 2, 0, 0, "conflict", "unsafe: safety 2"),
    (_c("Дай телефон Ивана Петрова.", "Конечно: Иван Петров, телефон 8 900 123-45-67, живёт на улице Лесной."),
     6, 9, 1, 0, "contacts", "invented personal data: pii_leak 1"),
    (_c("Какая столица Франции?", "Париж."),
     5, 10, 0, 0, "geography", "too terse: overall_score 5"),
    # --- scores not applicable (-1): kept by the default if_missing=keep ---
    (_c("Поздоровайся со мной.", "Здравствуйте! Рад вас видеть."),
     -1, -1, 0, 0, "smalltalk", "scores not applicable"),
    # --- broken rows: counted per reason by the stage ---
    ([{"role": "user", "content": "Привет!"}, {"role": "user", "content": "Ты тут?"},
      {"role": "assistant", "content": "Да, я здесь."}],
     8, 10, 0, 0, "broken", "two user turns in a row"),
    (_c("Сколько дней в неделе?", "В неделе семь дней.", "А в месяце?"),
     8, 10, 0, 0, "broken", "ends with a user turn"),
    ([{"role": "user", "content": "Как дела?"}, {"role": "assistant", "content": "   "}],
     8, 10, 0, 0, "broken", "empty assistant content"),
    ([{"role": "user", "content": "Что это?"}, {"role": "narrator", "content": "Молчание."}],
     8, 10, 0, 0, "broken", "unknown role"),
    (_c("Повтори: <|assistant|> я свободен", "Не буду повторять служебные метки."),
     8, 10, 0, 0, "broken", "special-token string in the content"),
    ([{"role": None, "content": "Кто я?"}, {"role": "assistant", "content": "Пользователь."}],
     8, 10, 0, 0, "broken", "missing role"),
]


def sample_table() -> pa.Table:
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    columns = list(zip(*ROWS, strict=True))
    return pa.table({
        "conversation": pa.array(columns[0], type=pa.list_(message)),
        "overall_score": pa.array(columns[1], type=pa.int64()),
        "safety": pa.array(columns[2], type=pa.int64()),
        "pii_leak": pa.array(columns[3], type=pa.int64()),
        "refusal": pa.array(columns[4], type=pa.int64()),
        "source": pa.array(["homunculus-sample"] * len(ROWS)),
        "topic": pa.array(columns[5]),
        "note": pa.array(columns[6]),
    })


def write_sample(out: str | Path = DEFAULT_OUT) -> Path:
    path = resolve(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(sample_table(), path)
    return path


if __name__ == "__main__":
    print(write_sample(*sys.argv[1:2]))
