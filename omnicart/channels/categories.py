"""SendGrid's rules for message categories, in one place for the journey validator and the sender.

SendGrid accepts at most 10 categories per message, each 7-bit ASCII and at most 255 characters
(https://www.twilio.com/docs/sendgrid/for-developers/sending-email/categories). Omnicart always adds
the journey's own name as a category, so that reports can be cut by journey; a template may add up
to 9 more. The journey validator refuses templates that break these rules, and the sender refuses
(rather than trims) a message that still would, so a category is never dropped silently.
"""

from __future__ import annotations

MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_TEMPLATE_CATEGORIES = MAX_CATEGORIES - 1  # one place is the journey's own


def category_problem(category: str) -> str | None:
    """Why SendGrid would refuse this category, or None when it is fine."""
    if not category:
        return "a category may not be empty"
    if not category.isascii():
        return f"category {category!r} is not 7-bit ASCII"
    if len(category) > MAX_CATEGORY_LENGTH:
        return f"category {category[:20]!r}... is longer than {MAX_CATEGORY_LENGTH} characters"
    return None


def check_template_categories(categories: list[str]) -> list[str]:
    """A template's own categories, or ``ValueError``: at most 9, each acceptable to SendGrid."""
    if len(categories) > MAX_TEMPLATE_CATEGORIES:
        raise ValueError(f"at most {MAX_TEMPLATE_CATEGORIES} categories: the journey's own name is always the tenth")
    _check(categories)
    return categories


def message_categories(journey: str, template_categories: list[str]) -> list[str]:
    """The journey's own category first, then the template's, without repeats.

    Raises ``ValueError`` when the result breaks SendGrid's rules: a message must not lose the
    journey's category to a limit, nor go out with a category SendGrid would reject.
    """
    categories = list(dict.fromkeys([journey, *template_categories]))
    if len(categories) > MAX_CATEGORIES:
        raise ValueError(
            f"{len(categories)} categories (the journey's own included); SendGrid takes at most {MAX_CATEGORIES}"
        )
    _check(categories)
    return categories


def _check(categories: list[str]) -> None:
    for category in categories:
        problem = category_problem(category)
        if problem is not None:
            raise ValueError(problem)
