"""The preference centre's own words, in the languages it speaks, and how the language is chosen.

A small catalogue in code rather than gettext files: a dozen strings per language, reviewed with the
page that shows them. Journeys' own message templates are localised elsewhere; these are only the
strings of the preference centre and unsubscribe pages.
"""

from __future__ import annotations

from collections.abc import Iterator

DEFAULT_LANGUAGE = "en"
RIGHT_TO_LEFT = frozenset({"fa", "ar", "he", "ur"})

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your message preferences",
        "intro": "Choose what we may send you. Your choices apply from now on.",
        "channels": "Channels",
        "topics": "Topics",
        "channel.email": "Email",
        "channel.sms": "Text messages (SMS)",
        "channel.push": "Push notifications",
        "channel.whatsapp": "WhatsApp",
        "topic.marketing": "Offers and news",
        "save": "Save my choices",
        "unsubscribe": "Unsubscribe from all emails",
        "saved_title": "Your choices are saved",
        "saved_text": "We follow them from now on.",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_text": "You will not receive these emails any more.",
        "confirm_title": "Unsubscribe from these emails?",
        "confirm_text": "Press the button to stop receiving these emails.",
        "expired_title": "This link has expired",
        "expired_text": "Open the link in a newer message to change your preferences. "
        "You can still unsubscribe from these emails:",
    },
    "tr": {
        "title": "İleti tercihleriniz",
        "intro": "Size neler gönderebileceğimizi seçin. Seçimleriniz bundan sonra geçerli olur.",
        "channels": "Kanallar",
        "topics": "Konular",
        "channel.email": "E-posta",
        "channel.sms": "Kısa mesaj (SMS)",
        "channel.push": "Anlık bildirimler",
        "channel.whatsapp": "WhatsApp",
        "topic.marketing": "Kampanyalar ve haberler",
        "save": "Tercihlerimi kaydet",
        "unsubscribe": "Tüm e-postalardan çık",
        "saved_title": "Tercihleriniz kaydedildi",
        "saved_text": "Bundan sonra bunlara uyacağız.",
        "unsubscribed_title": "Aboneliğiniz iptal edildi",
        "unsubscribed_text": "Artık bu e-postaları almayacaksınız.",
        "confirm_title": "Bu e-postalardan çıkmak istiyor musunuz?",
        "confirm_text": "Bu e-postaları almayı bırakmak için düğmeye basın.",
        "expired_title": "Bu bağlantının süresi doldu",
        "expired_text": "Tercihlerinizi değiştirmek için daha yeni bir iletideki bağlantıyı açın. "
        "Bu e-postalardan yine de çıkabilirsiniz:",
    },
    "ru": {
        "title": "Настройки рассылок",
        "intro": "Выберите, что мы можем вам присылать. Ваш выбор действует с этого момента.",
        "channels": "Каналы",
        "topics": "Темы",
        "channel.email": "Электронная почта",
        "channel.sms": "SMS-сообщения",
        "channel.push": "Push-уведомления",
        "channel.whatsapp": "WhatsApp",
        "topic.marketing": "Акции и новости",
        "save": "Сохранить",
        "unsubscribe": "Отписаться от всех писем",
        "saved_title": "Ваш выбор сохранён",
        "saved_text": "С этого момента мы будем его учитывать.",
        "unsubscribed_title": "Вы отписались",
        "unsubscribed_text": "Вы больше не будете получать эти письма.",
        "confirm_title": "Отписаться от этих писем?",
        "confirm_text": "Нажмите кнопку, чтобы больше не получать эти письма.",
        "expired_title": "Срок действия ссылки истёк",
        "expired_text": "Откройте ссылку из более нового письма, чтобы изменить настройки. "
        "Отписаться от этих писем можно и сейчас:",
    },
    "fa": {
        "title": "تنظیمات پیام‌های شما",
        "intro": "انتخاب کنید چه چیزهایی برایتان بفرستیم. انتخاب‌های شما از همین حالا اعمال می‌شوند.",
        "channels": "کانال‌ها",
        "topics": "موضوع‌ها",
        "channel.email": "ایمیل",
        "channel.sms": "پیامک",
        "channel.push": "اعلان‌ها",
        "channel.whatsapp": "واتس‌اپ",
        "topic.marketing": "پیشنهادها و اخبار",
        "save": "ذخیرهٔ انتخاب‌ها",
        "unsubscribe": "لغو اشتراک همهٔ ایمیل‌ها",
        "saved_title": "انتخاب‌های شما ذخیره شد",
        "saved_text": "از این پس مطابق آن‌ها عمل می‌کنیم.",
        "unsubscribed_title": "اشتراک شما لغو شد",
        "unsubscribed_text": "دیگر این ایمیل‌ها را دریافت نخواهید کرد.",
        "confirm_title": "اشتراک این ایمیل‌ها لغو شود؟",
        "confirm_text": "برای دریافت نکردن این ایمیل‌ها دکمه را بزنید.",
        "expired_title": "این پیوند منقضی شده است",
        "expired_text": "برای تغییر تنظیمات، پیوند یک پیام جدیدتر را باز کنید. "
        "همچنان می‌توانید اشتراک این ایمیل‌ها را لغو کنید:",
    },
}
LANGUAGES = frozenset(STRINGS)


def choose_language(profile_locale: str | None, accept_language: str | None) -> str:
    """The customer's profile locale if we speak it (``fa-IR`` → ``fa``), else the browser's first
    language we speak by its ``Accept-Language`` weights, else English."""
    for tag in (profile_locale, *_accepted(accept_language or "")):
        language = _language_of(tag)
        if language in LANGUAGES:
            return language
    return DEFAULT_LANGUAGE


def text(language: str, key: str) -> str:
    """One string in ``language``, falling back to English for a key it lacks."""
    return STRINGS.get(language, {}).get(key) or STRINGS[DEFAULT_LANGUAGE][key]


def label(language: str, kind: str, name: str) -> str:
    """What a channel or topic is called on the page; a shop's own topic by its name made readable."""
    known = STRINGS.get(language, {}).get(f"{kind}.{name}") or STRINGS[DEFAULT_LANGUAGE].get(f"{kind}.{name}")
    return known or name.replace("_", " ").capitalize()


def direction(language: str) -> str:
    return "rtl" if language in RIGHT_TO_LEFT else "ltr"


def _language_of(tag: str | None) -> str:
    return (tag or "").strip().replace("_", "-").split("-")[0].lower()


def _accepted(header: str) -> Iterator[str]:
    """``Accept-Language``'s tags, highest weight first (RFC 9110 section 12.5.4); ``*`` and q=0 left out."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and weight > 0:
            weighted.append((-weight, position, tag))
    for _, _, tag in sorted(weighted):
        yield tag
