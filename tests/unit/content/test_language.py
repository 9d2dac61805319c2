"""Language detection measured on a small labelled sample (one short paragraph per language)."""

from __future__ import annotations

from servers.content.language import detect_language

SAMPLE = {
    "en": "The committee will meet again next week to discuss the budget and the new building plans.",
    "de": "Der Ausschuss wird sich nächste Woche erneut treffen, um den Haushalt und die Baupläne zu besprechen.",
    "fr": "Le comité se réunira de nouveau la semaine prochaine pour discuter du budget et des plans du bâtiment.",
    "es": "El comité se reunirá de nuevo la próxima semana para discutir el presupuesto y los planos del edificio.",
    "it": "Il comitato si riunirà di nuovo la prossima settimana per discutere il bilancio e i progetti dell'edificio.",
    "nl": "De commissie komt volgende week opnieuw bijeen om de begroting en de nieuwe bouwplannen te bespreken.",
    "pt": "O comitê se reunirá novamente na próxima semana para discutir o orçamento e os planos do novo prédio.",
    "ru": "Комитет снова соберется на следующей неделе, чтобы обсудить бюджет и планы нового здания.",
    "ja": "委員会は来週再び会合を開き、予算と新しい建物の計画について話し合う予定です。",
    "pl": "Komisja zbierze się ponownie w przyszłym tygodniu, aby omówić budżet i plany nowego budynku.",
}


def test_sample_is_detected() -> None:
    got = {lang: detect_language(text) for lang, text in SAMPLE.items()}
    assert got == {lang: lang for lang in SAMPLE}


def test_too_short_is_undetermined() -> None:
    assert detect_language("ok 42") == "und"
    assert detect_language("") == "und"
